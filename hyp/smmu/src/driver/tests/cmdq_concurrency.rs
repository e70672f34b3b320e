//! Several CPUs on one command queue: issue under the lock or without it (reserve, write, publish), wait for the
//! own `CMD_SYNC` without it.

use std::sync::Mutex;

use super::*;
use crate::driver::{SharedCmdq, SyncTicket};
use crate::fake::FakeCmdqCons;

/// Issues `cmds` as a CPU does: lock-free (the driver's lock only tried to publish `CMDQ_PROD`, taken on
/// stalls), or with the driver locked around the whole issue.
fn issue(
    smmu: &Mutex<TestSmmu>,
    cmdq: &SharedCmdq<FakeCmdqCons, FakeMemory>,
    cmds: Vec<Command>,
    lock_free: bool,
) -> Result<SyncTicket, Error> {
    if lock_free {
        cmdq.issue(cmds, |try_only| {
            if try_only {
                smmu.try_lock().ok()
            } else {
                Some(smmu.lock().unwrap())
            }
        })
    } else {
        smmu.lock().unwrap().issue(cmds)
    }
}

/// Waits for `ticket` as a CPU does: the driver's lock is taken only for a [`crate::driver::SyncStep`].
fn wait(
    smmu: &Mutex<TestSmmu>,
    waiter: &SharedCmdq<FakeCmdqCons, FakeMemory>,
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
    let waiter = smmu.shared_cmdq();
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
    let waiter = smmu.shared_cmdq();
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
    let waiter = smmu.shared_cmdq();
    // The SMMU stops on the bad command (second of the first batch); the second batch queues behind it.
    let a = smmu.issue(illegal_batch()).unwrap();
    let b = smmu.issue([Command::tlbi_s12_vmall(Vmid(7))]).unwrap();
    let smmu = Mutex::new(smmu);
    // The second batch's CPU notices the error: the skip and acknowledgement unblock it, and it is not blamed.
    assert_eq!(wait(&smmu, &waiter, b), Ok(()));
    // The first batch's CPU collects the error, without having had to notice it.
    assert_eq!(wait(&smmu, &waiter, a), Err(ILLEGAL));
    let mut smmu = smmu.into_inner().unwrap();
    assert_eq!(
        kinds(&smmu.regs_mut().take_executed()),
        [
            &ILLEGAL_BATCH_RAN[..],
            &[CommandKind::TlbiS12Vmall { vmid: Vmid(7) }, SYNC]
        ]
        .concat()
    );
    // Collected once: nothing is left pending, later batches are clean.
    assert_eq!(smmu.invalidate_vmid(Vmid(1)), Ok(()));
    assert_eq!(smmu.check_global_errors(), Ok(()));
    assert_eq!(smmu.counters().cmdq_errors, 1);
}

/// A QEMU-like SMMU for the thread tests: a command queue of 2^`cmdq_log2` entries, `poll_limit` polls, and a
/// consumer that takes at most `budget` commands per register access.
fn slow_consumer(cmdq_log2: u32, poll_limit: u32, budget: u32) -> TestSmmu {
    let (mut smmu, _) = init_with(
        FakeSmmu::qemu,
        Config {
            cmdq_log2,
            poll_limit,
            ..config()
        },
    );
    smmu.regs_mut().set_consume_budget(Some(budget));
    smmu
}

/// Four threads issue 150 batches each into a 16-entry queue (about 40 laps of the ring, often full) with a
/// slow consumer (2 commands per register access): every batch completes, every command runs exactly once,
/// each batch's commands run together and in order, followed by one sync, and the one bad command is reported
/// to its own batch only, whichever thread finds it.
#[test]
fn threads_issue_under_the_lock_and_wait_concurrently() {
    threads_issue_and_wait_concurrently(false);
}

#[test]
fn threads_issue_lock_free_and_wait_concurrently() {
    threads_issue_and_wait_concurrently(true);
}

fn threads_issue_and_wait_concurrently(lock_free: bool) {
    const THREADS: u16 = 4;
    const BATCHES: u16 = 150;
    let smmu = slow_consumer(4, 100_000, 2);
    let waiter = smmu.shared_cmdq();
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
                    let ticket = issue(smmu, waiter, cmds, lock_free).unwrap();
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
    assert_eq!(waiter.published(), waiter.consumed() + 1);
}

/// Stress without a model checker: four threads issue lock-free batches of 1 to 20 commands (bigger than the
/// 8-entry queue: claimed in chunks, so other threads' commands fall between the chunks) into a consumer that
/// takes 1 to 3 commands per register access. Every ticket completes, every command runs exactly once, each
/// thread's commands run in its order, syncs are one per batch, and there is one sync per batch.
#[test]
fn lock_free_issue_stress_with_batches_bigger_than_the_queue() {
    const THREADS: u16 = 4;
    const BATCHES: u16 = 200;
    let smmu = slow_consumer(3, 1_000_000, 1);
    let before = smmu.counters();
    let cmdq = smmu.shared_cmdq();
    let smmu = Mutex::new(smmu);
    let vmid = |t: u16, n: u16| Vmid(t * 16384 + n);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (smmu, cmdq) = (&smmu, &cmdq);
            s.spawn(move || {
                let mut n = 0u16;
                for i in 0..BATCHES {
                    if i % 16 == 0 {
                        smmu.lock()
                            .unwrap()
                            .regs_mut()
                            .set_consume_budget(Some(1 + u32::from((t + i) % 3)));
                    }
                    let len = 1 + (i * 7 + t * 3) % 20;
                    let cmds: Vec<Command> = (0..len)
                        .map(|k| Command::tlbi_s12_vmall(vmid(t, n + k)))
                        .collect();
                    n += len;
                    let ticket = issue(smmu, cmdq, cmds, true).unwrap();
                    assert_eq!(wait(smmu, cmdq, ticket), Ok(()), "thread {t} batch {i}");
                    assert!(cmdq.is_done(ticket));
                }
            });
        }
    });
    let mut smmu = smmu.into_inner().unwrap();
    let executed = kinds(&smmu.regs_mut().take_executed());
    let syncs = executed.iter().filter(|k| **k == SYNC).count();
    assert_eq!(syncs, usize::from(THREADS * BATCHES));
    let mut next = [0u16; THREADS as usize];
    for k in executed.iter().filter(|k| **k != SYNC) {
        let CommandKind::TlbiS12Vmall { vmid: v } = k else {
            panic!("unexpected {k:?}");
        };
        let (t, n) = (usize::from(v.0 / 16384), v.0 % 16384);
        assert_eq!(n, next[t], "thread {t}'s commands run once, in order");
        next[t] += 1;
    }
    let expected: Vec<u16> = (0..THREADS)
        .map(|t| (0..BATCHES).map(|i| 1 + (i * 7 + t * 3) % 20).sum())
        .collect();
    assert_eq!(next.to_vec(), expected);
    let c = smmu.counters();
    assert_eq!(
        (c.batches - before.batches, c.timeouts, c.cmdq_errors),
        (u64::from(THREADS * BATCHES), 0, 0)
    );
    assert_eq!(c.commands - before.commands, executed.len() as u64);
    assert_eq!(cmdq.published(), cmdq.consumed());
}

#[test]
fn an_error_in_an_abandoned_batch_goes_to_the_cpu_that_finds_it() {
    let (mut smmu, _) = init();
    let waiter = smmu.shared_cmdq();
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
    assert_eq!(waiter.wait(b, |step| smmu.sync_step(b, step)), Err(ILLEGAL));
    assert!(waiter.is_done(a) && waiter.is_done(b));
    assert_eq!(smmu.invalidate_vmid(Vmid(1)), Ok(()));
    let c = smmu.counters();
    assert_eq!((c.cmdq_errors, c.timeouts), (1, 1));
}

/// An iterator that yields `cmds` but tells [`Iterator::size_hint`] `hint` (a buggy upper bound).
struct Hinted {
    cmds: std::vec::IntoIter<Command>,
    hint: (usize, Option<usize>),
}

impl Iterator for Hinted {
    type Item = Command;

    fn next(&mut self) -> Option<Command> {
        self.cmds.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.hint
    }
}

#[test]
fn a_batch_written_from_its_iterator_survives_a_wrong_size_hint() {
    let (mut smmu, _) = init();
    let vmall = |v| Command::tlbi_s12_vmall(Vmid(v));
    let vm = |v| CommandKind::TlbiS12Vmall { vmid: Vmid(v) };
    let before = smmu.counters();
    // Exact hint: one command and the sync, two slots.
    let start = smmu.shared_cmdq().published();
    let exact = Hinted {
        cmds: vec![vmall(1)].into_iter(),
        hint: (1, Some(1)),
    };
    let t = smmu.issue(exact).unwrap();
    assert_eq!(t.end(), start + 2);
    // Fewer than promised: the missing slots hold syncs (no-ops) and the batch still ends with its own.
    let fewer = Hinted {
        cmds: vec![vmall(2)].into_iter(),
        hint: (3, Some(3)),
    };
    let t = smmu.issue(fewer).unwrap();
    assert_eq!(t.end(), start + 2 + 4);
    // More than promised: the extra commands go before the sync, none is lost.
    let more = Hinted {
        cmds: vec![vmall(3), vmall(4), vmall(5)].into_iter(),
        hint: (0, Some(1)),
    };
    smmu.submit(more).unwrap();
    assert_eq!(smmu.shared_cmdq().published(), start + 2 + 4 + 4);
    assert_eq!(
        kinds(&smmu.regs_mut().take_executed()),
        [
            vm(1),
            SYNC,
            vm(2),
            SYNC,
            SYNC,
            SYNC,
            vm(3),
            vm(4),
            vm(5),
            SYNC
        ]
    );
    let c = smmu.counters();
    assert_eq!(
        (
            c.commands - before.commands,
            c.syncs - before.syncs,
            c.tlbi_s12_vmall - before.tlbi_s12_vmall,
            c.batches - before.batches
        ),
        (10, 5, 5, 3)
    );
}
