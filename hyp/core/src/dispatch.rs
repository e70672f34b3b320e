//! Hypercall dispatch: validated request, operation, result registers.
