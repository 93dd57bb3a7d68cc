using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SpecVm.Sync;

/// <summary>
/// Sleepable read-copy-update (Linux SRCU, the classic 2017-era algorithm): per-CPU lock and unlock counters for two
/// indices; readers never write a shared line, and a grace period waits out every reader that began before it.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="ReadLock"/> increments this CPU's <c>lock[idx]</c> for the current index and issues a full fence;
/// <see cref="ReadUnlock"/> increments <c>unlock[idx]</c> for the same index. A reader may sleep in between.
/// </para>
/// <para>
/// <see cref="Synchronize"/> (serialized by a mutex) first waits for the <em>inactive</em> index to drain (readers that
/// read the index just before the previous flip may still be counting there), flips the index, then waits for the
/// old index to drain. "Drained" is Linux's <c>srcu_readers_active_idx_check</c>: sum the unlock counts, full fence,
/// sum the lock counts; equal means no reader of that index is inside. Reading unlocks first is what makes the
/// check safe against a reader that moves between CPUs' slots' sums while we add.
/// </para>
/// <para>
/// <see cref="Defer"/> queues a callback (<c>call_srcu</c>); a worker thread batches everything queued, runs one
/// grace period for the batch, then runs the callbacks. <see cref="Barrier"/> waits for all queued callbacks.
/// </para>
/// <para>
/// Public surface: the read side only (<see cref="ReadLock"/>, <see cref="ReadLockLite"/>, <see cref="ReadUnlock"/>,
/// <see cref="ReadUnlockLocal"/>), which a fault strategy needs around a lockless VMA lookup
/// (<c>cpu.Machine.Srcu</c>); the update side (grace periods, deferred frees) belongs to the address space that retires
/// VMAs and is internal.
/// </para>
/// <para>
/// Misuse is refused before any counter changes. A CPU's read-section nesting depth is its own slot's lock counts
/// minus its unlock counts, so it costs the read path nothing: an unlock of an index with no open section on that
/// CPU throws <see cref="InvalidOperationException"/> (an extra unlock would otherwise make every later grace period
/// wait forever), and so does <see cref="Synchronize"/> from a CPU (a waiter whose <see cref="ISpinWaiter.Id"/> names it)
/// that is inside a read section (it would wait for itself). A callback that throws does not stop the domain: the
/// exception is kept and the next <see cref="Barrier"/> throws an <see cref="AggregateException"/> carrying every
/// callback exception not yet reported (<see cref="FailedCallbacks"/> counts them all). A grace-period wait longer
/// than <see cref="WatchdogTimeout"/> throws <see cref="HungTaskException"/> (Debug builds only by default; in Release
/// it waits forever, as <c>synchronize_srcu</c> does); if that happens to a batch of deferred callbacks, the batch is
/// dropped, never run early (its objects leak; none is freed under a reader), and the next Barrier reports it.
/// </para>
/// </remarks>
public sealed unsafe class Srcu : IDisposable
{
    private readonly PerCpu<Slot> _slots;
    private int _completed;
    private readonly object _gpMutex = new();
    private long _gracePeriods;
    private int _liteReaders;

    private readonly object _queueLock = new();
    private List<(Action<object?> Callback, object? State)> _pending = [];
    private List<(Action<object?> Callback, object? State)>? _held;
    private List<(Action<object?> Callback, object? State)> _spare = [];
    private long _queuedBatches;
    private long _doneBatches;
    private Thread? _worker;
    private bool _stopping;
    private long _callbacksRun;
    private long _failedCallbacks;
    private List<Exception>? _unreportedErrors;
    private long _watchdogTicks = Watchdog.ToTicks(Watchdog.DefaultTimeout);
    private TimeSpan _watchdogTimeout = Watchdog.DefaultTimeout;

    /// <summary>Creates an SRCU domain for <paramref name="cpuCount"/> CPUs.</summary>
    /// <param name="cpuCount">The number of reader slots (CPU ids 0..cpuCount-1).</param>
    internal Srcu(int cpuCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(cpuCount, 1);
        _slots = new PerCpu<Slot>(cpuCount);
    }

    /// <summary>The number of reader slots.</summary>
    internal int CpuCount => _slots.Count;

    /// <summary>Grace periods completed so far.</summary>
    internal long GracePeriods => Volatile.Read(ref _gracePeriods);

    /// <summary>Deferred callbacks run so far.</summary>
    internal long CallbacksRun => Volatile.Read(ref _callbacksRun);

    /// <summary>Deferred callbacks that threw, or were dropped because their grace period failed, so far.</summary>
    internal long FailedCallbacks => Volatile.Read(ref _failedCallbacks);

    /// <summary>
    /// How long a grace period may wait for readers before <see cref="Synchronize"/> gives up with
    /// <see cref="HungTaskException"/>; <see cref="Timeout.InfiniteTimeSpan"/> waits forever. Defaults to
    /// <see cref="Watchdog.DefaultTimeout"/>: 30 s in Debug builds, infinite in Release.
    /// </summary>
    internal TimeSpan WatchdogTimeout
    {
        get => _watchdogTimeout;
        set
        {
            _watchdogTicks = Watchdog.ToTicks(value);
            _watchdogTimeout = value;
        }
    }

    /// <summary>True once a reader has used <see cref="ReadLockLite"/>: grace periods then use a process-wide barrier.</summary>
    internal bool HasLiteReaders => Volatile.Read(ref _liteReaders) != 0;

    /// <summary>Test hook: when true, <see cref="Synchronize"/> skips the index flip (a planted bug for tests).</summary>
    internal bool PlantSkipFlip { get; set; }

    /// <summary>Enters a read-side critical section on <paramref name="cpu"/> (<c>srcu_read_lock</c>).</summary>
    /// <param name="cpu">The reader's CPU id; only that CPU's thread may use its slot.</param>
    /// <returns>The index to pass to <see cref="ReadUnlock"/>.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int ReadLock(int cpu)
    {
        ref Slot slot = ref _slots[cpu];

        // Acquire read of the index; a stale index is allowed (Synchronize drains the inactive index first for
        // exactly that reader), so no stronger ordering is needed here: the fence below orders our count.
        int idx = Volatile.Read(ref _completed) & 1;
        ref long counter = ref idx == 0 ? ref slot.Lock0 : ref slot.Lock1;

        // Plain increment of our own slot (only this CPU writes it), published by the full fence below.
        VirtualTime.Access(Unsafe.AsPointer(ref counter), LineAccess.Store);
        Volatile.Write(ref counter, counter + 1);

        // Full fence (Linux: smp_mb() B): the lock count must be visible before any read inside the section,
        // or a grace period could see "no readers" while we already read a pointer it is about to free.
        Interlocked.MemoryBarrier();
        return idx;
    }

    /// <summary>
    /// Enters a read-side critical section without a memory fence (Linux 6.13 <c>srcu_read_lock_lite</c>): the CPU's lock
    /// count is a plain store, and the ordering the fence would give is paid by the grace period instead, with a
    /// process-wide barrier (<see cref="Interlocked.MemoryBarrierProcessWide"/>, Linux's <c>membarrier</c>; the kernel
    /// calls <c>synchronize_rcu()</c> there). For hot readers and rare grace periods, as RCU's read side in
    /// <c>lock_vma_under_rcu</c>, which has no fence at all. Leave it with <see cref="ReadUnlockLocal"/> or
    /// <see cref="ReadUnlock"/>; lite and full readers may share a domain (the grace period then orders both).
    /// </summary>
    /// <param name="cpu">The reader's CPU id; only that CPU's thread may use its slot.</param>
    /// <returns>The index to pass to the unlock.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int ReadLockLite(int cpu)
    {
        ref Slot slot = ref _slots[cpu];
        if (Volatile.Read(ref _liteReaders) == 0)
        {
            MarkLiteReaders(); // Once per domain: from now on every grace period uses the process-wide barrier.
        }

        // Acquire read of the index, as in ReadLock (a stale index is what Synchronize's first drain is for).
        int idx = Volatile.Read(ref _completed) & 1;
        ref long counter = ref idx == 0 ? ref slot.Lock0 : ref slot.Lock1;

        // Plain store of our own slot, no fence (srcu_read_lock_lite's this_cpu_inc + barrier()). The reads of the
        // section may then pass it on this CPU (store-load reordering); a grace period makes that harmless: its
        // process-wide barrier (ReadersDrained) runs on every CPU, so either our count is visible to its lock sum, or
        // our section's reads come after the barrier and see what the updater published before it (the pointer is
        // gone, so the section cannot reach what the grace period frees). Without that barrier a grace period could
        // sum our slot before the store landed and free a VMA this section already read.
        VirtualTime.Access(Unsafe.AsPointer(ref counter), LineAccess.Store);
        Volatile.Write(ref counter, counter + 1);
        return idx;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void MarkLiteReaders()
    {
        // Full fence (Interlocked): the flag is visible before this CPU's first lite section's count, so a grace
        // period that can miss that count (no reader fence) is one that has seen the flag and uses the barrier. A
        // grace period already past its flag read when we set it started before our section and does not wait for it.
        Interlocked.Exchange(ref _liteReaders, 1);
    }

    /// <summary>Leaves a read-side critical section (<c>srcu_read_unlock</c>).</summary>
    /// <param name="cpu">The CPU id that the section is accounted to: the one passed to <see cref="ReadLock"/> (the
    /// unlock itself may run on any thread, as in Linux).</param>
    /// <param name="idx">The index <see cref="ReadLock"/> returned.</param>
    /// <exception cref="InvalidOperationException">No section of index <paramref name="idx"/> is open on
    /// <paramref name="cpu"/> (a double unlock, or a wrong CPU or index); nothing changed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ReadUnlock(int cpu, int idx)
    {
        if ((uint)idx > 1)
        {
            ThrowBadIndex(idx);
        }

        ref Slot slot = ref _slots[cpu];
        ref long counter = ref idx == 0 ? ref slot.Unlock0 : ref slot.Unlock1;
        ref long locks = ref idx == 0 ? ref slot.Lock0 : ref slot.Lock1;

        // Acquire reads of the lock count (the same line, usually ours; it only grows, so a section seen open stays
        // counted) and of the unlock count. Unlocks must never pass locks: an extra unlock makes locks == unlocks
        // unreachable for this index, and every later grace period would wait forever. Checked before anything changes.
        // Not atomic with the increment below (a CAS loop here measured ~4-5 ns more per lock/unlock pair than the
        // fetch-add): two threads racing to unlock the same one open section can both pass; that misuse is left to
        // the grace-period watchdog, which names the CPU.
        if (Volatile.Read(ref locks) <= Volatile.Read(ref counter))
        {
            ThrowUnlockWithoutLock(cpu, idx);
        }

        // Release (Linux: smp_mb() C before the increment): every read of the section completes before the unlock
        // count says we left. Interlocked, not a plain store, because the unlock may come from another thread
        // than the lock (a task that slept and woke elsewhere) while this CPU's owner increments too.
        Interlocked.Increment(ref counter);
    }

    /// <summary>
    /// <see cref="ReadUnlock"/> for the common case where the section is left on the CPU that entered it, from that
    /// CPU's own thread: its slot's unlock counter then has a single writer, so a release store replaces the atomic.
    /// </summary>
    /// <param name="cpu">The CPU id that entered the section; the caller must be that CPU's thread.</param>
    /// <param name="idx">The index <see cref="ReadLock"/> returned.</param>
    /// <exception cref="InvalidOperationException">No section of index <paramref name="idx"/> is open on
    /// <paramref name="cpu"/>; nothing changed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ReadUnlockLocal(int cpu, int idx)
    {
        if ((uint)idx > 1)
        {
            ThrowBadIndex(idx);
        }

        ref Slot slot = ref _slots[cpu];
        ref long counter = ref idx == 0 ? ref slot.Unlock0 : ref slot.Unlock1;
        long unlocks = counter; // Plain read: only this CPU's thread writes this counter on this path.

        // Plain read of our own lock count (only this thread writes it): unlocks must never pass locks (see
        // ReadUnlock); checked before anything changes.
        if ((idx == 0 ? slot.Lock0 : slot.Lock1) <= unlocks)
        {
            ThrowUnlockWithoutLock(cpu, idx);
        }

        // Release (Linux: smp_mb() C before the increment): every read of the section completes before the unlock
        // count says we left; a grace period that counts this unlock therefore finds the section over. A plain
        // read-modify-write is safe because only this CPU's thread writes this counter on this path; a CPU that may
        // be unlocked from elsewhere must use ReadUnlock.
        Volatile.Write(ref counter, unlocks + 1);
    }

    /// <summary>Waits until every reader that entered before this call has left (<c>synchronize_srcu</c>).</summary>
    /// <param name="waiter">Served while waiting; may be null. When it is a CPU (<see cref="ISpinWaiter.Id"/>), that CPU
    /// must not be inside a read section of this domain.</param>
    /// <exception cref="InvalidOperationException">The waiting CPU is inside a read section (it would wait for itself).</exception>
    /// <exception cref="HungTaskException">The wait outlasted <see cref="WatchdogTimeout"/>.</exception>
    /// <exception cref="ObjectDisposedException">The domain was disposed.</exception>
    internal void Synchronize(ISpinWaiter? waiter = null)
    {
        int self = waiter?.Id ?? -1;
        if ((uint)self < (uint)_slots.Count && OpenSections(self) > 0)
        {
            throw new InvalidOperationException(
                $"Srcu.Synchronize called on CPU {self} inside a read section ({OpenSections(self)} open): a grace period waits for " +
                "every reader, this one included, so it would never end. Leave the section first (the synchronize_srcu rule).");
        }

        long start = Stopwatch.GetTimestamp();
        if (!Monitor.TryEnter(_gpMutex, _watchdogTimeout))
        {
            ThrowHung("the grace-period mutex (another Synchronize holds it and does not finish)", Stopwatch.GetTimestamp() - start);
        }

        try
        {
            // Acquire read of the index under the grace-period mutex (only Synchronize changes it, under this mutex).
            int oldIdx = Volatile.Read(ref _completed) & 1;

            // Readers that fetched the index just before the previous flip may still count in the inactive index.
            WaitForReaders(oldIdx ^ 1, waiter, start);

            if (!PlantSkipFlip)
            {
                // Full fence (Interlocked): readers arriving after this use the other index; the drain check below
                // then only has to wait for readers that are already in the old one, so it terminates.
                Interlocked.Increment(ref _completed);
            }

            WaitForReaders(oldIdx, waiter, start);
            Interlocked.Increment(ref _gracePeriods); // Statistics; read racily by GracePeriods.
        }
        finally
        {
            Monitor.Exit(_gpMutex);
        }
    }

    /// <summary>The number of read sections open on <paramref name="cpu"/>: its lock counts minus its unlock counts.</summary>
    /// <remarks>Exact on the CPU's own thread (only it locks there); a racy snapshot from elsewhere.</remarks>
    internal long OpenSections(int cpu)
    {
        ref Slot slot = ref _slots[cpu];

        // Acquire reads: unlocks first, as in ReadersDrained, so a counted unlock always has its lock counted.
        long unlocks = Volatile.Read(ref slot.Unlock0) + Volatile.Read(ref slot.Unlock1);
        return Volatile.Read(ref slot.Lock0) + Volatile.Read(ref slot.Lock1) - unlocks;
    }

    private void WaitForReaders(int idx, ISpinWaiter? waiter, long start)
    {
        if (Volatile.Read(ref _liteReaders) != 0 && VirtualTime.Current == null)
        {
            // Process-wide barrier (Linux: synchronize_rcu() in place of smp_mb() A for SRCU_READ_FLAVOR_LITE), once per
            // wait: it serialises every CPU, so a lite reader's lock count stored before it is visible to every check
            // below, and a lite reader whose count comes after it reads only what the updater left published before
            // this grace period (see ReadLockLite). Simulated CPUs run one at a time, each handoff a full barrier.
            Interlocked.MemoryBarrierProcessWide();
        }

        // The library's spin policy with a grace-period phase (Backoff): spin briefly (a reader section is usually
        // short), then sleep — a grace period is not latency-critical, and a waiter that yields in a loop steals time
        // from the CPUs whose readers it waits for. The first sleeps only give up the time slice; later ones last 1 ms.
        // A simulated CPU waits in virtual time only (a host sleep would stop the whole simulation).
        var backoff = new Backoff(Backoff.GracePeriodSpinSteps);
        while (!ReadersDrained(idx))
        {
            if (VirtualTime.Current is { } sim)
            {
                sim.Relax();
                continue;
            }

            if (backoff.Spin(waiter))
            {
                continue;
            }

            // The watchdog reads the clock only once the wait has gone to sleep.
            long waited = Stopwatch.GetTimestamp() - start;
            if (waited > _watchdogTicks)
            {
                ThrowHung($"SRCU readers of index {idx} to leave (CPUs with open sections: {DescribeOpenSections()}); " +
                          "a read section never unlocked, or Synchronize/Barrier waiting inside one", waited);
            }

            waiter?.PrepareToBlock();
            Thread.Sleep(backoff.Escalations < 10 ? 0 : 1);
            waiter?.FinishBlock();
            backoff.Escalated();
        }
    }

    /// <summary>True when no reader is inside index <paramref name="idx"/> (<c>srcu_readers_active_idx_check</c>).</summary>
    internal bool ReadersDrained(int idx)
    {
        long unlocks = 0;
        for (int cpu = 0; cpu < _slots.Count; cpu++)
        {
            ref Slot slot = ref _slots[cpu];

            // Acquire: pairs with the unlocker's release, so a counted unlock brings its section's reads with it.
            unlocks += Volatile.Read(ref idx == 0 ? ref slot.Unlock0 : ref slot.Unlock1);
        }

        // Full fence (Linux: smp_mb() A): the unlock sums are taken before the lock sums, so a reader counted
        // as unlocked is certainly counted as locked; reading in the other order could count an unlock whose lock
        // we missed and conclude "drained" while a reader is inside. (Lite readers, which have no fence of their own,
        // are ordered by the process-wide barrier WaitForReaders issues before its first check.)
        Interlocked.MemoryBarrier();

        long locks = 0;
        for (int cpu = 0; cpu < _slots.Count; cpu++)
        {
            ref Slot slot = ref _slots[cpu];

            // Acquire reads after the fence above: see the comment there for why locks are summed second.
            locks += Volatile.Read(ref idx == 0 ? ref slot.Lock0 : ref slot.Lock1);
        }

        return locks == unlocks;
    }

    /// <summary>Runs <paramref name="callback"/> once, after a grace period that starts after this call (<c>call_srcu</c>).</summary>
    /// <param name="callback">The callback; give it a static lambda and pass data through <paramref name="state"/> to avoid allocating.</param>
    /// <param name="state">Passed to the callback.</param>
    internal void Defer(Action<object?> callback, object? state)
    {
        ArgumentNullException.ThrowIfNull(callback);
        lock (_queueLock)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            if (VirtualTime.Current != null)
            {
                // A simulated CPU: the grace-period worker is a host thread outside virtual time, whose timing would
                // decide when VMAs return to the slab (and so the run's result). Hold the callbacks until the
                // simulation ends (ReleaseHeld); the VMAs they free are not reused meanwhile.
                (_held ??= []).Add((callback, state));
                return;
            }

            _pending.Add((callback, state));
            if (_pending.Count == 1)
            {
                _queuedBatches++;
            }

            if (_worker == null)
            {
                _worker = new Thread(WorkerLoop) { IsBackground = true, Name = "srcu-gp" };
                _worker.Start();
            }

            Monitor.PulseAll(_queueLock);
        }
    }

    /// <summary>Queues the callbacks that simulated CPUs deferred (held while a virtual-time run went on).</summary>
    internal void ReleaseHeld()
    {
        List<(Action<object?>, object?)>? held;
        lock (_queueLock)
        {
            held = _held;
            _held = null;
        }

        foreach ((Action<object?> callback, object? state) in held ?? [])
        {
            Defer(callback, state);
        }
    }

    /// <summary>Waits until every callback queued before this call has run (<c>srcu_barrier</c>).</summary>
    /// <exception cref="AggregateException">Callbacks threw (or their grace period failed) since the last report: one
    /// inner exception each. They are reported once; the domain keeps working.</exception>
    /// <exception cref="InvalidOperationException">Called from a deferred callback (it would wait for itself).</exception>
    /// <exception cref="HungTaskException">The wait outlasted twice <see cref="WatchdogTimeout"/> (a callback that does
    /// not return).</exception>
    internal void Barrier()
    {
        // Acquire read of the worker, which Defer publishes under _queueLock: a stale null only means the caller is not
        // the worker (the worker's own thread saw the assignment before it started), so the check is never wrong.
        if (Thread.CurrentThread == Volatile.Read(ref _worker))
        {
            throw new InvalidOperationException("Srcu.Barrier called from a deferred callback: it would wait for its own batch forever (the srcu_barrier rule).");
        }

        List<Exception>? errors;
        long start = Stopwatch.GetTimestamp();
        lock (_queueLock)
        {
            long target = _queuedBatches;
            while (_doneBatches < target)
            {
                // Woken by the worker after each batch; the timed wait is only the watchdog's clock (a callback that
                // never returns would otherwise hang every Barrier silently). Twice the timeout: the batch's grace
                // period has a watchdog of its own, whose report (the dropped batch) should win when it is the cause.
                Monitor.Wait(_queueLock, 100);
                long waited = Stopwatch.GetTimestamp() - start;
                if (_doneBatches < target && waited / 2 > _watchdogTicks)
                {
                    ThrowHung($"SRCU deferred callbacks to finish ({target - _doneBatches} batch(es) left; a callback that never returns, or a read section left open)", waited);
                }
            }

            errors = _unreportedErrors;
            _unreportedErrors = null;
        }

        if (errors != null)
        {
            throw new AggregateException($"{errors.Count} SRCU deferred callback(s) failed.", errors);
        }
    }

    /// <summary>Callbacks queued and not yet run (a racy snapshot).</summary>
    internal int PendingCallbacks
    {
        get
        {
            lock (_queueLock)
            {
                return _pending.Count;
            }
        }
    }

    private void WorkerLoop()
    {
        while (true)
        {
            List<(Action<object?> Callback, object? State)> batch;
            lock (_queueLock)
            {
                while (_pending.Count == 0 && !_stopping)
                {
                    Monitor.Wait(_queueLock);
                }

                if (_pending.Count == 0)
                {
                    return;
                }

                // Take the whole batch; callbacks queued from now on go to the next grace period.
                batch = _pending;
                _pending = _spare;
                _spare = batch;
            }

            List<Exception>? errors = null;
            try
            {
                Synchronize();
                foreach ((Action<object?> callback, object? state) in batch)
                {
                    try
                    {
                        callback(state);
                    }
                    catch (Exception ex)
                    {
                        // A callback's failure must not end this thread (an unhandled exception here kills the process)
                        // nor skip the rest of the batch: keep it for the next Barrier.
                        (errors ??= []).Add(ex);
                        Interlocked.Increment(ref _failedCallbacks); // Statistics; read racily by FailedCallbacks.
                    }

                    Interlocked.Increment(ref _callbacksRun); // Statistics; read racily by CallbacksRun.
                }
            }
            catch (Exception ex)
            {
                // The grace period itself failed (the watchdog): running the batch now could free what a reader still
                // uses, so drop it (its objects leak; none is freed early) and report why.
                (errors ??= []).Add(new InvalidOperationException($"SRCU dropped {batch.Count} deferred callback(s): their grace period failed.", ex));
                Interlocked.Add(ref _failedCallbacks, batch.Count); // Statistics; read racily by FailedCallbacks.
            }

            batch.Clear();
            lock (_queueLock)
            {
                if (errors != null)
                {
                    (_unreportedErrors ??= []).AddRange(errors);
                }

                _doneBatches++;
                Monitor.PulseAll(_queueLock);
            }
        }
    }

    /// <summary>Runs the callbacks still queued (after a grace period), stops the worker and frees the slots. Waits for
    /// the worker: with a read section left open and the watchdog off (Release), that wait does not end.</summary>
    internal void Dispose()
    {
        Thread? worker;
        lock (_queueLock)
        {
            if (_stopping)
            {
                return;
            }

            _stopping = true;
            worker = _worker;
            Monitor.PulseAll(_queueLock);
        }

        worker?.Join();
        _slots.Dispose();
    }

    /// <summary>As <see cref="Dispose"/>: the machine that owns the domain disposes it (explicit, so that users of a
    /// machine's domain are not offered it).</summary>
    void IDisposable.Dispose() => Dispose();

    private string DescribeOpenSections()
    {
        var open = new List<string>();
        for (int cpu = 0; cpu < _slots.Count; cpu++)
        {
            long n = OpenSections(cpu);
            if (n != 0)
            {
                open.Add($"{cpu} ({n})");
            }
        }

        return open.Count == 0 ? "none now" : string.Join(", ", open);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowHung(string what, long waitedTicks) =>
        throw new HungTaskException(what, Stopwatch.GetElapsedTime(0, waitedTicks));

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowUnlockWithoutLock(int cpu, int idx) =>
        throw new InvalidOperationException(
            $"Srcu.ReadUnlock on CPU {cpu}, index {idx}, without an open read section there (a double unlock, or the wrong CPU or " +
            "index): every unlock must match one ReadLock on the same CPU, or no later grace period could end. Nothing was changed.");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowBadIndex(int idx) =>
        throw new ArgumentOutOfRangeException(nameof(idx), idx, "SRCU index must be the 0 or 1 that ReadLock returned.");

    /// <summary>One CPU's counters: lock and unlock counts for both indices, in one line of their own.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Slot
    {
        public long Lock0;
        public long Lock1;
        public long Unlock0;
        public long Unlock1;
    }
}
