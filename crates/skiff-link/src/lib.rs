//! The node-to-server protocol: message types, framing, the IO-free session state machine, and the quinn driver.
