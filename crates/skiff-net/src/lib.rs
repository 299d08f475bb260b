//! Pod networking: bridge, veth pairs, IPAM, routes and NAT through netlink and nftables.
