//! A minimal protobuf wire reader, independent of prost, used as the oracle in the tests.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

/// Wire types of the protobuf encoding (the low 3 bits of a field key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    LengthDelimited,
    Fixed32,
}

/// One top-level field of an encoded message.
#[derive(Clone, Copy, Debug)]
pub struct RawField<'a> {
    pub number: u32,
    pub wire_type: WireType,
    /// The whole field as encoded: key, then length prefix (if any) and value.
    pub encoded: &'a [u8],
    /// Only the value: the varint or fixed bytes, or the bytes after the length prefix.
    pub value: &'a [u8],
}

/// Reads a base-128 varint at the start of `bytes`; returns it and its encoded length.
pub fn read_varint(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    for (position, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * position);
        if byte & 0x80 == 0 {
            return (value, position + 1);
        }
    }
    panic!("truncated or over-long varint in {bytes:02x?}");
}

/// Splits an encoded message into its top-level fields, in encoded order.
pub fn fields(message: &[u8]) -> Vec<RawField<'_>> {
    let mut result = Vec::new();
    let mut offset = 0;
    while offset < message.len() {
        let start = offset;
        let (key, key_length) = read_varint(&message[offset..]);
        offset += key_length;
        let number = u32::try_from(key >> 3).expect("field number fits in u32");
        let (wire_type, value_start, value_end) = match key & 7 {
            0 => {
                let (_, length) = read_varint(&message[offset..]);
                (WireType::Varint, offset, offset + length)
            }
            1 => (WireType::Fixed64, offset, offset + 8),
            2 => {
                let (length, prefix_length) = read_varint(&message[offset..]);
                let value_start = offset + prefix_length;
                let length = usize::try_from(length).expect("length fits in usize");
                (WireType::LengthDelimited, value_start, value_start + length)
            }
            5 => (WireType::Fixed32, offset, offset + 4),
            other => panic!("unexpected wire type {other} for field {number} at byte {start}"),
        };
        assert!(
            value_end <= message.len(),
            "field {number} at byte {start} runs past the end ({value_end} > {})",
            message.len()
        );
        offset = value_end;
        result.push(RawField {
            number,
            wire_type,
            encoded: &message[start..value_end],
            value: &message[value_start..value_end],
        });
    }
    result
}

/// The (field number, wire type) sequence of an encoded message.
pub fn layout(message: &[u8]) -> Vec<(u32, WireType)> {
    fields(message)
        .iter()
        .map(|field| (field.number, field.wire_type))
        .collect()
}
