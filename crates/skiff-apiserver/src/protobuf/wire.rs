//! The protobuf wire format: varints, fixed-width values, length-delimited bytes.

use super::{err, ProtobufError};

/// One field's value as it appears on the wire.
#[derive(Debug, Clone, Copy)]
pub(super) enum WireValue<'a> {
    Varint(u64),
    /// A 64-bit fixed-width value (no served field uses one; skipped).
    Fixed64,
    Bytes(&'a [u8]),
    /// A 32-bit fixed-width value (skipped likewise).
    Fixed32,
}

impl WireValue<'_> {
    pub(super) fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => 0,
            WireValue::Fixed64 => 1,
            WireValue::Bytes(_) => 2,
            WireValue::Fixed32 => 5,
        }
    }
}

/// Reads fields from a buffer.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(super) fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| err("truncated varint"))?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(err("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        if n > self.buf.len() {
            return Err(err(format!(
                "field of {n} bytes runs past the end of its message ({} left)",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next `(field number, value)`, or `None` at the end.
    pub(super) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, ProtobufError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| err("field number out of range"))?;
        if tag == 0 {
            return Err(err("field number 0 is invalid"));
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                WireValue::Fixed64
            }
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| err("length out of range"))?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                WireValue::Fixed32
            }
            other => return Err(err(format!("unsupported wire type {other}"))),
        };
        Ok(Some((tag, value)))
    }
}
