//! PSCI function IDs, decoding and the relay policy for host calls.
