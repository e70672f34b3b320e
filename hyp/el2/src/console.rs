//! The PL011 console shared with the host, and the `warden: ` log macro.
//!
//! Only two registers are used: `UARTDR` (write a byte) and `UARTFR.TXFF` (wait while the FIFO is full).
//! The UART is the one QEMU set up for the host too; the hypervisor does not reprogram it. Its base comes
//! from the device tree ([`set_base`]); [`layout::EARLY_UART_PA`] is used only until then.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use warden_core::layout;

use crate::mmio;

/// Offset of the data register.
const UARTDR: u64 = 0x000;
/// Offset of the flag register.
const UARTFR: u64 = 0x018;
/// `UARTFR.TXFF`: transmit FIFO full.
const UARTFR_TXFF: u32 = 1 << 5;
/// Bound on the busy-wait for FIFO space per byte, so a wedged UART can never hang the hypervisor.
const TX_SPIN_LIMIT: u32 = 1_000_000;

static BASE: AtomicU64 = AtomicU64::new(layout::EARLY_UART_PA);
/// Serialises whole log lines between CPUs.
static LOCK: Mutex<()> = Mutex::new(());

/// Uses the PL011 at `base` from now on (it must be mapped as device memory in the EL2 stage-1).
pub fn set_base(base: u64) {
    BASE.store(base, Ordering::Relaxed);
}

/// The PL011 base in use.
pub fn base() -> u64 {
    BASE.load(Ordering::Relaxed)
}

struct Uart;

impl Uart {
    fn put(&mut self, byte: u8) {
        let base = base();
        for _ in 0..TX_SPIN_LIMIT {
            // SAFETY: `base` is the PL011 the device tree (or the boot protocol) names, mapped as device
            // memory in every EL2 stage-1 map; UARTFR is read-only with no side effects.
            if unsafe { mmio::read32(base + UARTFR) } & UARTFR_TXFF == 0 {
                break;
            }
        }
        // SAFETY: As above; writing UARTDR queues one byte.
        unsafe { mmio::write32(base + UARTDR, u32::from(byte)) };
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

/// Prints one `warden: `-prefixed line. Used by [`log!`](crate::log).
pub fn log_line(args: fmt::Arguments<'_>) {
    let _guard = LOCK.lock();
    let _ = Uart.write_fmt(format_args!("warden: {args}\n"));
}

/// Prints one line without taking the console lock (after a bounded wait for it): for the panic and
/// fatal-exception paths, which must print even if the CPU that holds the lock is gone.
pub fn log_line_forced(args: fmt::Arguments<'_>) {
    let mut guard = None;
    for _ in 0..TX_SPIN_LIMIT {
        if let Some(g) = LOCK.try_lock() {
            guard = Some(g);
            break;
        }
    }
    let _ = Uart.write_fmt(format_args!("warden: {args}\n"));
    drop(guard);
}

/// Logs a `warden: `-prefixed line on the console.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::console::log_line(format_args!($($arg)*))
    };
}
