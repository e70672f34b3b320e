//! SMCCC function-ID decoding (fast/yielding, 32/64, owner) and standard return codes.
