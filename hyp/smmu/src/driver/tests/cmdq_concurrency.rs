//! Several CPUs on one command queue: issue under the lock, wait for the own `CMD_SYNC` without it.

use std::sync::Mutex;

use super::*;
use crate::driver::{CmdqWaiter, SyncTicket};
use crate::fake::FakeCmdqCons;

/// Waits for `ticket` as a CPU does: the driver's lock is taken only for a [`crate::driver::SyncStep`].
fn wait(
    smmu: &Mutex<TestSmmu>,
    waiter: &CmdqWaiter<FakeCmdqCons>,
    ticket: SyncTicket,
) -> Result<(), Error> {
    waiter.wait(ticket, |step| smmu.lock().unwrap().sync_step(ticket, step))
}

#[test]
fn issue_returns_before_the_sync_and_the_wait_needs_no_lock() {
    // Polls enough for the main thread to lift the stall, however the threads are scheduled.
    let (mut smmu, _) = init_with(
        FakeSmmu::qemu,
        Config {
            poll_limit: 10_000_000,
            ..config()
        },
    );
    let waiter = smmu.cmdq_waiter();
    smmu.regs_mut().set_sync_stall(true);
    let a = smmu.issue([Command::tlbi_s12_vmall(Vmid(1))]).unwrap();
    assert!(!waiter.is_done(a));
    // A second batch is issued behind the first one's pending sync: nothing waited for the first.
    let b = smmu.issue([Command::tlbi_s12_vmall(Vmid(2))]).unwrap();
    assert_eq!(b.end(), a.end() + 2);
    assert!(!waiter.is_done(b));
    let smmu = Mutex::new(smmu);
    std::thread::scope(|s| {
        let waiting = s.spawn(|| wait(&smmu, &waiter, b));
        // While a CPU waits, another takes the lock and issues (the waiter only takes it on stalls, briefly).
        let c = smmu
            .lock()
            .unwrap()
            .issue([Command::tlbi_s12_vmall(Vmid(3))])
            .unwrap();
        smmu.lock().unwrap().regs_mut().set_sync_stall(false);
        assert_eq!(waiting.join().unwrap(), Ok(()));
        assert_eq!(wait(&smmu, &waiter, a), Ok(()));
        assert_eq!(wait(&smmu, &waiter, c), Ok(()));
    });
    let mut smmu = smmu.into_inner().unwrap();
    assert_eq!(
        kinds(&smmu.regs_mut().take_executed()),
        [
            CommandKind::TlbiS12Vmall { vmid: Vmid(1) },
            SYNC,
            CommandKind::TlbiS12Vmall { vmid: Vmid(2) },
            SYNC,
            CommandKind::TlbiS12Vmall { vmid: Vmid(3) },
            SYNC
        ]
    );
    assert!(smmu.counters().sync_polls > 0);
}

#[test]
fn tickets_are_not_confused_by_later_laps_of_the_ring() {
    let (mut smmu, _) = init_with(
        FakeSmmu::qemu,
        Config {
            cmdq_log2: 3,
            ..config()
        },
    );
    let waiter = smmu.cmdq_waiter();
    let first = smmu.issue([Command::tlbi_nsnh_all()]).unwrap();
    // 100 laps of an 8-entry queue later, the first ticket is still done, and a stalled sync is still pending
    // although its CMDQ_PROD value equals positions already passed many times.
    for i in 0..400u16 {
        smmu.submit([Command::tlbi_s12_vmall(Vmid(i))]).unwrap();
    }
    assert!(waiter.is_done(first));
    assert_eq!(waiter.wait(first, |_| panic!("no lock needed")), Ok(()));
    smmu.regs_mut().set_sync_stall(true);
    let late = smmu.issue([Command::tlbi_nsnh_all()]).unwrap();
    assert_eq!(late.end() - first.end(), 2 + 400 * 2);
    assert!(!waiter.is_done(late));
    assert_eq!(
        waiter.wait(late, |step| smmu.sync_step(late, step)),
        Err(Error::Timeout(Wait::CmdSync))
    );
    smmu.regs_mut().set_sync_stall(false);
    assert_eq!(waiter.wait(late, |step| smmu.sync_step(late, step)), Ok(()));
    assert_eq!(waiter.consumed(), late.end());
}

#[test]
fn a_command_error_is_blamed_on_the_batch_that_owns_it() {
    let (mut smmu, _) = init();
    let waiter = smmu.cmdq_waiter();
    let bad = Command::from_raw([0xFF, 0]);
    // The SMMU stops on `bad` (second command of the first batch); the second batch queues behind it.
    let a = smmu
        .issue([
            Command::cfgi_ste(StreamId(1), true),
            bad,
            Command::tlbi_nsnh_all(),
        ])
        .unwrap();
    let b = smmu.issue([Command::tlbi_s12_vmall(Vmid(7))]).unwrap();
    let smmu = Mutex::new(smmu);
    // The second batch's CPU notices the error: the skip and acknowledgement unblock it, and it is not blamed.
    assert_eq!(wait(&smmu, &waiter, b), Ok(()));
    // The first batch's CPU collects the error, without having had to notice it.
    assert_eq!(
        wait(&smmu, &waiter, a),
        Err(Error::CommandError {
            opcode: 0xFF,
            error: crate::CmdqError::Illegal
        })
    );
    let mut smmu = smmu.into_inner().unwrap();
    assert_eq!(
        kinds(&smmu.regs_mut().take_executed()),
        [
            CommandKind::CfgiSte {
                sid: StreamId(1),
                leaf: true
            },
            SYNC,
            CommandKind::TlbiNsnhAll,
            SYNC,
            CommandKind::TlbiS12Vmall { vmid: Vmid(7) },
            SYNC
        ]
    );
    // Collected once: nothing is left pending, later batches are clean.
    assert_eq!(smmu.invalidate_vmid(Vmid(1)), Ok(()));
    assert_eq!(smmu.check_global_errors(), Ok(()));
    assert_eq!(smmu.counters().cmdq_errors, 1);
}

/// Four threads issue 150 batches each into a 16-entry queue with a slow consumer (2 commands per register
/// access): every batch completes, every command runs exactly once, each batch's commands run together and in
/// order, followed by one sync, and the one bad command is reported to its own batch only.
#[test]
fn threads_issue_and_wait_concurrently() {
    const THREADS: u16 = 4;
    const BATCHES: u16 = 150;
    let (mut smmu, _) = init_with(
        FakeSmmu::qemu,
        Config {
            cmdq_log2: 4,
            poll_limit: 100_000,
            ..config()
        },
    );
    smmu.regs_mut().set_consume_budget(Some(2));
    let waiter = smmu.cmdq_waiter();
    let smmu = Mutex::new(smmu);
    // Batch (t, i) is 1 to 3 `TLBI_S12_VMALL`s whose VMIDs name the thread, the batch and the command.
    let vmid = |t: u16, i: u16, k: u16| Vmid(t * 4096 + i * 4 + k);
    let len = |t: u16, i: u16| 1 + (t + i) % 3;
    let bad_batch = (2u16, 77u16);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (smmu, waiter) = (&smmu, &waiter);
            s.spawn(move || {
                for i in 0..BATCHES {
                    let mut cmds: Vec<Command> = (0..len(t, i))
                        .map(|k| Command::tlbi_s12_vmall(vmid(t, i, k)))
                        .collect();
                    if (t, i) == bad_batch {
                        cmds.push(Command::from_raw([0xFF, 0]));
                    }
                    let ticket = smmu.lock().unwrap().issue(cmds).unwrap();
                    let result = wait(smmu, waiter, ticket);
                    if (t, i) == bad_batch {
                        assert!(
                            matches!(result, Err(Error::CommandError { opcode: 0xFF, .. })),
                            "{result:?}"
                        );
                    } else {
                        assert_eq!(result, Ok(()), "batch ({t}, {i})");
                    }
                }
            });
        }
    });
    let mut smmu = smmu.into_inner().unwrap();
    let executed = kinds(&smmu.regs_mut().take_executed());
    let mut batches = executed.split(|k| *k == SYNC).collect::<Vec<_>>();
    assert_eq!(batches.pop(), Some(&[][..]), "ends with a sync");
    // The bad command became a sync: its batch shows up as two pieces, the second one empty.
    assert_eq!(
        batches.len(),
        usize::from(THREADS * BATCHES) + 1,
        "one sync per batch plus the replaced command"
    );
    let mut next = [0u16; THREADS as usize];
    let mut pending_empty = false;
    for batch in batches {
        if pending_empty {
            assert!(
                batch.is_empty(),
                "the bad command's replacement follows its batch"
            );
            pending_empty = false;
            continue;
        }
        let CommandKind::TlbiS12Vmall { vmid: first } = batch[0] else {
            panic!("unexpected {batch:?}");
        };
        let (t, i) = (first.0 / 4096, first.0 % 4096 / 4);
        assert_eq!(
            i,
            next[usize::from(t)],
            "thread {t}'s batches run in its order"
        );
        next[usize::from(t)] += 1;
        let expected: Vec<CommandKind> = (0..len(t, i))
            .map(|k| CommandKind::TlbiS12Vmall {
                vmid: vmid(t, i, k),
            })
            .collect();
        assert_eq!(batch, &expected[..], "batch ({t}, {i}) runs whole, alone");
        pending_empty = (t, i) == bad_batch;
    }
    assert_eq!(next, [BATCHES; THREADS as usize]);
    let c = smmu.counters();
    assert_eq!(c.cmdq_errors, 1);
    assert_eq!(c.timeouts, 0);
    assert!(c.sync_polls >= u64::from(THREADS * BATCHES));
    assert_eq!(waiter.consumed(), smmu.issue([]).unwrap().end() - 1);
}

#[test]
fn an_error_in_an_abandoned_batch_goes_to_the_cpu_that_finds_it() {
    let (mut smmu, _) = init();
    let waiter = smmu.cmdq_waiter();
    smmu.regs_mut().set_consume_budget(Some(0));
    let a = smmu.issue([Command::from_raw([0xFF, 0])]).unwrap();
    assert_eq!(
        waiter.wait(a, |step| smmu.sync_step(a, step)),
        Err(Error::Timeout(Wait::CmdSync))
    );
    // The consumer resumes and stops on the abandoned batch's command: the next waiter finds the error, and
    // gets it, as nobody else would.
    smmu.regs_mut().set_consume_budget(None);
    let b = smmu.issue([Command::tlbi_nsnh_all()]).unwrap();
    assert_eq!(
        waiter.wait(b, |step| smmu.sync_step(b, step)),
        Err(Error::CommandError {
            opcode: 0xFF,
            error: crate::CmdqError::Illegal
        })
    );
    assert!(waiter.is_done(a) && waiter.is_done(b));
    assert_eq!(smmu.invalidate_vmid(Vmid(1)), Ok(()));
    let c = smmu.counters();
    assert_eq!((c.cmdq_errors, c.timeouts), (1, 1));
}
