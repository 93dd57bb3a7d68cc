using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SpecVm.Sync;

/// <summary>
/// A reader/writer semaphore with one shared count word, as Linux's <c>rw_semaphore</c>; SpecVm's mmap lock
/// (Linux <c>mmap_sem</c>, today <c>mmap_lock</c>).
/// </summary>
/// <remarks>
/// <para>
/// Every acquisition, read or write, is an atomic read-modify-write of one word, so even pure readers bounce its
/// cache line between CPUs: that bouncing is part of what SpecVm measures (docs/references.md, "The article").
/// </para>
/// <code>
///  63 62                32 31 30 29             1    0
/// +--+--------------------+--+--+--------------+----+
/// |0 |  active readers    |HO|RH|waiting writers| WL |   WL = a writer holds the lock
/// +--+--------------------+--+--+--------------+----+   HO = writer handoff, RH = reader handoff
/// </code>
/// <para>
/// Writer preference: a reader enters only when no writer holds the lock <em>and none waits</em>, so a stream of
/// readers cannot starve a writer. A waiter spins (serving interrupts through its <see cref="ISpinWaiter"/>) for
/// the library's spin phase (<c>Backoff</c>), then sleeps on a monitor; releasers wake sleepers only when the sleeper count
/// says there are any (a Dekker pair of full fences makes that check race-free).
/// </para>
/// <para>
/// Handoff (Linux's <c>RWSEM_FLAG_HANDOFF</c>): a writer that has spun a whole phase and slept without getting the lock
/// sets the handoff bit, and from then on only it may take the lock for write (the others' compare-and-swaps see the
/// bit); it clears the bit in the same compare-and-swap that takes the lock. Without it, a writer that releases and at
/// once re-acquires (a task mapping and unmapping in a loop) wins every time against waiters that must first wake up,
/// and they starve: on simulated CPUs, one CPU of four took almost every mmap write section.
/// </para>
/// <para>
/// Readers get the same protection (Linux wakes the readers at the head of its wait queue and grants them the lock on
/// the writer's release, before the writer can take it back): a reader that has spun a phase and slept sets the reader
/// handoff bit; while it is set no writer takes the lock, and waiting readers enter as soon as no writer holds it, even
/// with writers waiting; the reader that set it clears it in the compare-and-swap that lets it in. Without it, a task
/// mapping and unmapping in a loop kept a faulting task that had fallen back to the mmap lock out for a whole run.
/// </para>
/// <para>
/// Misuse and failures: a waiter that leaves by an exception (its <see cref="ISpinWaiter"/> threw, for instance a CPU
/// that would sleep with interrupts disabled, or the watchdog fired) undoes its waiting-writer registration before the
/// exception leaves, so readers proceed and the lock is exactly as if the waiter had never come. A wait longer than
/// <see cref="WatchdogTimeout"/> throws <see cref="HungTaskException"/> (on by default in Debug builds only; in Release
/// a wait is unbounded, as <c>down_write</c>'s is). Releasing what is not held throws
/// <see cref="SynchronizationLockException"/> and leaves the count word as it was.
/// </para>
/// <para>
/// Where the count lives: in memory that never moves (a pinned block), reached through a pointer fixed at
/// construction, so that every acquisition is the same one load of a read-only field and one atomic on the count, wherever
/// the count is. A semaphore made with the public constructor owns a block of three lines with the count alone in the
/// middle one (<see cref="HotLine"/>); an address space places its mmap lock's count in its own lock block instead
/// (<c>Mm.LockLayout</c>: alone on its line, or on one line with the page-table lock to show false sharing). The
/// virtual-time seam names the count by its address, so the simulator sees whatever shares its 64-byte line as one line.
/// </para>
/// </remarks>
internal sealed unsafe class RwSemaphore
{
    private const long WriterLocked = 1;
    private const long WaitingWriterUnit = 1L << 1;
    private const long WaitingWriterMask = ((1L << 29) - 1) << 1;
    private const long ReaderHandoff = 1L << 30;
    private const long Handoff = 1L << 31;
    private const long ReaderUnit = 1L << 32;
    private const long ReaderMask = ((1L << 31) - 1) << 32;

    /// <summary>Spin rounds before a waiter sleeps: the library's lock spin phase (<c>Backoff.SpinSteps</c>), long
    /// enough to ride out a fault handler's critical section, short enough not to burn a time slice when the holder
    /// is descheduled (Linux spins only while the owner runs; we cannot see that, so we bound it).</summary>
    public const int SpinIterations = Backoff.SpinSteps;

    /// <summary>On a simulated CPU: the spin steps (each a bounded wait for the count's line) before a waiter sleeps.</summary>
    private const int VirtualSpinSteps = 2;

    /// <summary>A waiting writer's wake-up condition: the lock free, and not handed to another waiter.</summary>
    private static readonly Func<RwSemaphore, bool> CanTakeForWrite =
        static s => (Volatile.Read(ref *s._count) & (WriterLocked | ReaderMask | Handoff | ReaderHandoff)) == 0;

    /// <summary>The wake-up condition of the writer that holds the handoff: the lock free.</summary>
    private static readonly Func<RwSemaphore, bool> CanTakeHandedOff =
        static s => (Volatile.Read(ref *s._count) & (WriterLocked | ReaderMask | ReaderHandoff)) == 0;

    /// <summary>A waiting reader's wake-up condition: no writer holds the lock, and none waits or readers hold the handoff.</summary>
    private static readonly Func<RwSemaphore, bool> CanRead = static s => MayRead(Volatile.Read(ref *s._count));

    /// <summary>The wake-up condition of the reader that holds the reader handoff: no writer holds the lock.</summary>
    private static readonly Func<RwSemaphore, bool> CanReadHandedOff =
        static s => (Volatile.Read(ref *s._count) & WriterLocked) == 0;

    /// <summary>The count word (see the diagram); fixed at construction, in memory that never moves.</summary>
    private readonly long* _count;

    /// <summary>What keeps the memory behind <see cref="_count"/> alive (a pinned array: it never moves).</summary>
    private readonly object _countStorage;

    private StatsLine _stats;
    private readonly StripedCounter _readStripes = new();
    private readonly object _sleepLock = new();
    private int _sleepers;
    private int _writerOwnerThread;
    private long _watchdogTicks = Watchdog.ToTicks(Watchdog.DefaultTimeout);
    private TimeSpan _watchdogTimeout = Watchdog.DefaultTimeout;

    /// <summary>Creates a free semaphore whose count word is alone on its own cache line.</summary>
    public RwSemaphore()
    {
        // A pinned array never moves, so the pointer stays valid for as long as the array lives (this object keeps it).
        HotLine[] storage = GC.AllocateArray<HotLine>(1, pinned: true);
        _count = (long*)Unsafe.AsPointer(ref storage[0].Count);
        _countStorage = storage;
    }

    /// <summary>Creates a free semaphore whose count word is at <paramref name="count"/> (an address space's lock block).</summary>
    /// <param name="count">An 8-byte-aligned, zeroed word in memory that never moves.</param>
    /// <param name="storage">The object that owns that memory (kept alive by this semaphore): a pinned array.</param>
    internal RwSemaphore(long* count, object storage)
    {
        _count = count;
        _countStorage = storage;
    }

    /// <summary>The address of the count word (for the layout tests and the virtual-time seam of readers of the lock's state).</summary>
    internal long* CountAddress => _count;

    /// <summary>
    /// How long a waiter may wait before it gives up with <see cref="HungTaskException"/> (checked once it sleeps, so
    /// the spin phase stays free of clock reads); <see cref="Timeout.InfiniteTimeSpan"/> waits forever. Defaults to
    /// <see cref="Watchdog.DefaultTimeout"/>: 30 s in Debug builds, infinite in Release.
    /// </summary>
    public TimeSpan WatchdogTimeout
    {
        get => _watchdogTimeout;
        set
        {
            _watchdogTicks = Watchdog.ToTicks(value);
            _watchdogTimeout = value;
        }
    }

    /// <summary>Read acquisitions so far (the sum of the per-core stripes: a racy snapshot while readers run).</summary>
    public long ReadAcquisitions => _readStripes.Sum();

    /// <summary>Write acquisitions so far.</summary>
    public long WriteAcquisitions => Volatile.Read(ref _stats.WriteAcquisitions);

    /// <summary>Read acquisitions that had to wait.</summary>
    public long ContendedReads => Volatile.Read(ref _stats.ContendedReads);

    /// <summary>Write acquisitions that had to wait.</summary>
    public long ContendedWrites => Volatile.Read(ref _stats.ContendedWrites);

    /// <summary>Total time spent waiting by readers, in <see cref="Stopwatch"/> ticks.</summary>
    public long ReadWaitTicks => Volatile.Read(ref _stats.ReadWaitTicks);

    /// <summary>Total time spent waiting by writers, in <see cref="Stopwatch"/> ticks.</summary>
    public long WriteWaitTicks => Volatile.Read(ref _stats.WriteWaitTicks);

    /// <summary>Total time the lock was held for write, in <see cref="Stopwatch"/> ticks.</summary>
    public long WriteHoldTicks => Volatile.Read(ref _stats.WriteHoldTicks);

    /// <summary>True while a writer holds the lock (a racy snapshot).</summary>
    public bool IsWriteLocked => (Volatile.Read(ref *_count) & WriterLocked) != 0;

    /// <summary>The number of readers inside (a racy snapshot).</summary>
    public int ReaderCount => (int)((Volatile.Read(ref *_count) & ReaderMask) >> 32);

    /// <summary>The number of writers waiting (a racy snapshot).</summary>
    public int WaitingWriters => (int)((Volatile.Read(ref *_count) & WaitingWriterMask) >> 1);

    /// <summary>Takes the lock for read if no writer holds it or waits (<c>down_read_trylock</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryReadLock()
    {
        VirtualTime.Access(_count, LineAccess.Rmw);
        long count = Volatile.Read(ref *_count);
        while ((count & (WriterLocked | WaitingWriterMask)) == 0)
        {
            // CAS (full fence): claims a reader slot and orders the read section after it.
            long seen = Interlocked.CompareExchange(ref *_count, count + ReaderUnit, count);
            if (seen == count)
            {
                _readStripes.Increment();
                return true;
            }

            count = seen; // Another reader moved the count: retry while no writer holds it or waits.
        }

        return false;
    }

    /// <summary>Takes the lock for read, waiting if needed (<c>down_read</c>).</summary>
    /// <param name="waiter">Served while spinning; told before and after sleeping; may be null.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ReadLock(ISpinWaiter? waiter = null)
    {
        // Fast path as Linux's: an optimistic fetch-add, cheaper than a CAS loop when many readers arrive at once.
        VirtualTime.Access(_count, LineAccess.Rmw);
        long count = Interlocked.Add(ref *_count, ReaderUnit);
        if ((count & (WriterLocked | WaitingWriterMask)) != 0)
        {
            ReadLockSlow(waiter);
            return;
        }

        // Statistics only, off the count's line (a per-core stripe): down_read has no statistics at all.
        _readStripes.Increment();
    }

    /// <summary>
    /// As <see cref="ReadLock"/> (one fetch-add on the fast path, as <c>down_read</c>), returning the Stopwatch ticks it
    /// waited: 0 on the fast path, so a caller that accounts waits per CPU reads no clock unless it waited.
    /// </summary>
    /// <param name="waiter">Served while spinning; told before and after sleeping; may be null.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal long ReadLockTimed(ISpinWaiter? waiter)
    {
        // Full fence (fetch-add), as in ReadLock: claims a reader slot optimistically and orders the section after it.
        VirtualTime.Access(_count, LineAccess.Rmw);
        long count = Interlocked.Add(ref *_count, ReaderUnit);
        if ((count & (WriterLocked | WaitingWriterMask)) != 0)
        {
            return ReadLockSlowTimed(waiter);
        }

        // Statistics only, off the count's line (a per-core stripe): down_read has no statistics at all.
        _readStripes.Increment();
        return 0;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private long ReadLockSlowTimed(ISpinWaiter? waiter)
    {
        long start = VirtualTime.Timestamp();
        ReadLockSlow(waiter);
        return Math.Max(1, VirtualTime.Timestamp() - start);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReadLockSlow(ISpinWaiter? waiter)
    {
        // A writer holds the lock or waits for it: back our optimistic increment out (the writer may be waiting
        // for the reader count to reach zero) and wait for the writers to go.
        VirtualTime.Access(_count, LineAccess.Rmw);
        long after = Interlocked.Add(ref *_count, -ReaderUnit);
        if ((after & ReaderMask) == 0)
        {
            WakeSleepers();
        }

        long start = VirtualTime.Timestamp();
        Backoff backoff = NewBackoff();
        bool handoff = false; // This reader set the reader handoff bit.
        try
        {
            while (true)
            {
                // Acquire read of the count: only a hint; the CAS below is what claims (and orders) the read section.
                VirtualTime.Access(_count, LineAccess.Rmw);
                long count = Volatile.Read(ref *_count);
                if (handoff ? (count & WriterLocked) == 0 : MayRead(count))
                {
                    // CAS (full fence): claims a reader slot (and gives the handoff back); see TryReadLock.
                    if (Interlocked.CompareExchange(ref *_count, count + ReaderUnit - (handoff ? ReaderHandoff : 0), count) == count)
                    {
                        handoff = false;
                        break;
                    }

                    continue;
                }

                if (!handoff && backoff.Escalations > 0 && (count & ReaderHandoff) == 0)
                {
                    // We slept once and a writer still holds the lock or waits: ask for the next turn. CAS (full fence):
                    // at most one reader holds the bit; a moved count means look again.
                    handoff = Interlocked.CompareExchange(ref *_count, count | ReaderHandoff, count) == count;
                    continue;
                }

                Wait(ref backoff, waiter, handoff ? CanReadHandedOff : CanRead, start, "the mmap lock for read");
            }
        }
        finally
        {
            if (handoff)
            {
                // Leaving by an exception while holding the reader handoff: give it back (full fence), or writers
                // would wait for a reader that never comes; wake whoever slept behind it.
                VirtualTime.Access(_count, LineAccess.Rmw);
                Interlocked.Add(ref *_count, -ReaderHandoff);
                WakeSleepers();
            }
        }

        // Statistics only: atomic so concurrent waiters lose no counts; they order nothing.
        _readStripes.Increment();
        Interlocked.Increment(ref _stats.ContendedReads);
        Interlocked.Add(ref _stats.ReadWaitTicks, VirtualTime.Timestamp() - start);
    }

    /// <summary>
    /// Whether a waiting reader may enter with the lock in state <paramref name="count"/>: no writer holds it, and either
    /// none waits (writer preference) or a reader holds the reader handoff.
    /// </summary>
    private static bool MayRead(long count) =>
        (count & WriterLocked) == 0 && ((count & WaitingWriterMask) == 0 || (count & ReaderHandoff) != 0);

    /// <summary>Releases a read hold (<c>up_read</c>). Throws if no reader holds the lock.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ReadUnlock()
    {
        // Full fence (fetch-add): the read section's loads complete before the reader count drops, so a writer that
        // sees zero readers cannot change data a reader is still reading.
        VirtualTime.Access(_count, LineAccess.Rmw);
        long after = Interlocked.Add(ref *_count, -ReaderUnit);
        if (after < 0)
        {
            // There was no reader to release: the reader field borrowed into the sign bit. Undo before anyone acts
            // on it (a writer seeing a nonzero reader field only waits longer) and report the mistake.
            Interlocked.Add(ref *_count, ReaderUnit);
            throw new SynchronizationLockException("RwSemaphore.ReadUnlock called but no reader holds the lock (double exit?).");
        }

        if ((after & ReaderMask) == 0 && (after & WaitingWriterMask) != 0)
        {
            WakeSleepers(); // Last reader out with a writer waiting: the writer may be asleep.
        }
    }

    /// <summary>Takes the lock for write if it is free (<c>down_write_trylock</c>).</summary>
    public bool TryWriteLock()
    {
        // CAS (full fence): claims the lock only from the fully free state and orders the write section after it.
        VirtualTime.Access(_count, LineAccess.Rmw);
        if (Interlocked.CompareExchange(ref *_count, WriterLocked, 0) != 0)
        {
            return false;
        }

        OnWriteAcquired();
        return true;
    }

    /// <summary>Takes the lock for write, waiting if needed (<c>down_write</c>).</summary>
    /// <param name="waiter">Served while spinning; told before and after sleeping; may be null.</param>
    public void WriteLock(ISpinWaiter? waiter = null)
    {
        // CAS (full fence) from the free state; see TryWriteLock.
        VirtualTime.Access(_count, LineAccess.Rmw);
        if (Interlocked.CompareExchange(ref *_count, WriterLocked, 0) == 0)
        {
            OnWriteAcquired();
            return;
        }

        WriteLockSlow(waiter);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WriteLockSlow(ISpinWaiter? waiter)
    {
        long start = VirtualTime.Timestamp();

        // Announce ourselves (full fence): from now on new readers back off (writer preference).
        VirtualTime.Access(_count, LineAccess.Rmw);
        Interlocked.Add(ref *_count, WaitingWriterUnit);
        bool acquired = false;
        bool handoff = false; // This waiter set the handoff bit.
        try
        {
            Backoff backoff = NewBackoff();
            while (true)
            {
                // Acquire read of the count: only a hint; the CAS below is what claims the lock.
                VirtualTime.Access(_count, LineAccess.Load);
                long count = Volatile.Read(ref *_count);
                if ((count & (WriterLocked | ReaderMask | ReaderHandoff)) == 0 && (handoff || (count & Handoff) == 0))
                {
                    // CAS (full fence): turn our waiting unit (and our handoff bit) into the lock in one step, so no
                    // reader slips in between.
                    VirtualTime.Access(_count, LineAccess.Rmw);
                    long claimed = count - WaitingWriterUnit + WriterLocked - (handoff ? Handoff : 0);
                    if (Interlocked.CompareExchange(ref *_count, claimed, count) == count)
                    {
                        acquired = true;
                        break;
                    }

                    continue; // The count moved (a reader backed out, another writer announced): look again.
                }

                if (!handoff && backoff.Escalations > 0 && (count & Handoff) == 0)
                {
                    // We slept once and the lock still went elsewhere: ask for it next. CAS (full fence): at most one
                    // waiter holds the bit; a moved count means look again.
                    VirtualTime.Access(_count, LineAccess.Rmw);
                    handoff = Interlocked.CompareExchange(ref *_count, count | Handoff, count) == count;
                    continue;
                }

                // The wake-up condition reads the count with acquire: free for us (the handoff is ours), or free and
                // not handed to another waiter.
                Wait(ref backoff, waiter, handoff ? CanTakeHandedOff : CanTakeForWrite, start, "the mmap lock for write");
            }
        }
        finally
        {
            if (!acquired)
            {
                // Leaving by an exception (the waiter threw, the watchdog fired): withdraw our waiting unit (full
                // fence), or readers would back off for good and every later fault would hang behind a phantom writer.
                // Readers that backed off because of us may be asleep: wake them (WakeSleepers reads _sleepers after
                // this fence, the Dekker pair described in Wait).
                VirtualTime.Access(_count, LineAccess.Rmw);
                Interlocked.Add(ref *_count, -WaitingWriterUnit - (handoff ? Handoff : 0));
                WakeSleepers();
            }
        }

        OnWriteAcquired();

        // Statistics only: atomic so concurrent waiters lose no counts; they order nothing.
        Interlocked.Increment(ref _stats.ContendedWrites);
        Interlocked.Add(ref _stats.WriteWaitTicks, VirtualTime.Timestamp() - start);
    }

    private void OnWriteAcquired()
    {
        _writerOwnerThread = Environment.CurrentManagedThreadId;
        _stats.WriteAcquisitions++;
        _stats.WriteStart = VirtualTime.Timestamp();
    }

    /// <summary>Releases the write hold (<c>up_write</c>). Throws if the calling thread does not hold it.</summary>
    public void WriteUnlock()
    {
        long count = Volatile.Read(ref *_count);
        if ((count & WriterLocked) == 0)
        {
            throw new SynchronizationLockException("RwSemaphore.WriteUnlock called but no writer holds the lock (double exit?).");
        }

        if (_writerOwnerThread != Environment.CurrentManagedThreadId)
        {
            throw new SynchronizationLockException($"RwSemaphore.WriteUnlock called by thread {Environment.CurrentManagedThreadId}, but thread {_writerOwnerThread} holds the lock.");
        }

        _stats.WriteHoldTicks += VirtualTime.Timestamp() - _stats.WriteStart;
        _writerOwnerThread = 0;

        // Full fence (fetch-add): the write section's stores are visible before the lock reads as free.
        VirtualTime.Access(_count, LineAccess.Rmw);
        long after = Interlocked.Add(ref *_count, -WriterLocked);
        if (after != 0)
        {
            WakeSleepers(); // Someone (a writer, or readers that backed off) may be asleep.
        }
        else if (Volatile.Read(ref _sleepers) != 0)
        {
            WakeSleepers();
        }
    }

    /// <summary>Downgrades a write hold to a read hold without letting another writer in (<c>downgrade_write</c>).</summary>
    public void DowngradeWrite()
    {
        if (_writerOwnerThread != Environment.CurrentManagedThreadId || !IsWriteLocked)
        {
            throw new SynchronizationLockException("RwSemaphore.DowngradeWrite called by a thread that does not hold the lock for write.");
        }

        _stats.WriteHoldTicks += VirtualTime.Timestamp() - _stats.WriteStart;
        _writerOwnerThread = 0;

        // Full fence (fetch-add): become a reader and drop the writer bit in one step.
        VirtualTime.Access(_count, LineAccess.Rmw);
        Interlocked.Add(ref *_count, ReaderUnit - WriterLocked);
        _readStripes.Increment();
        WakeSleepers();
    }

    /// <summary>A waiter's backoff: the lock spin phase on real threads; on a simulated CPU, a few bounded waits for the
    /// count's line before it sleeps.</summary>
    private static Backoff NewBackoff() => VirtualTime.Current != null ? new Backoff(VirtualSpinSteps) : Backoff.ForLock();

    private void Wait(ref Backoff backoff, ISpinWaiter? waiter, Func<RwSemaphore, bool> canGo, long start, string what)
    {
        if (VirtualTime.Current != null)
        {
            WaitVirtual(ref backoff, waiter, canGo);
            return;
        }

        if (backoff.Spin(waiter))
        {
            return;
        }

        // The spin phase is spent: sleep. The watchdog looks at the clock only here, once per sleep (at most every
        // 50 ms), never while spinning.
        long waited = VirtualTime.Timestamp() - start;
        if (waited > _watchdogTicks)
        {
            ThrowHung(what, waited);
        }

        waiter?.PrepareToBlock();
        try
        {
            lock (_sleepLock)
            {
                // Dekker with the releasers: we publish "a sleeper exists" (full fence) and then re-read the count;
                // a releaser changes the count (full fence) and then reads _sleepers. At least one of us sees the
                // other, so a release cannot slip between our check and our sleep (the lost wake-up).
                Interlocked.Increment(ref _sleepers);
                try
                {
                    if (!canGo(this))
                    {
                        // Bounded sleep as a backstop only; the wake-up above is what normally ends it.
                        Monitor.Wait(_sleepLock, 50);
                    }
                }
                finally
                {
                    // We are awake (or going back to spin): releasers need not wake us any more.
                    Interlocked.Decrement(ref _sleepers);
                }
            }
        }
        finally
        {
            waiter?.FinishBlock();
        }

        backoff.Escalated();
    }

    /// <summary>
    /// <see cref="Wait"/> on a simulated CPU: a few spin steps that park until the count's line is written (serving IPIs
    /// meanwhile), then a lazy sleep until it is written again; no host lock, no host sleep, no host clock.
    /// </summary>
    private void WaitVirtual(ref Backoff backoff, ISpinWaiter? waiter, Func<RwSemaphore, bool> canGo)
    {
        if (backoff.Step())
        {
            VirtualTime.WaitOn(_count, sleep: false);
            return;
        }

        waiter?.PrepareToBlock();
        try
        {
            if (!canGo(this))
            {
                VirtualTime.WaitOn(_count, sleep: true);
            }
        }
        finally
        {
            waiter?.FinishBlock();
        }

        backoff.Escalated();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowHung(string what, long waitedTicks) =>
        throw new HungTaskException(
            $"{what} (readers inside: {ReaderCount}, writer holds it: {IsWriteLocked}, writers waiting: {WaitingWriters}); " +
            "a holder that never releases (a missing ReadUnlock/WriteUnlock) or a deadlock with the waiter's own hold",
            Stopwatch.GetElapsedTime(0, waitedTicks));

    private void WakeSleepers()
    {
        // Read after our count change (the fetch-add before it was a full fence): see Wait's Dekker comment.
        if (Volatile.Read(ref _sleepers) == 0)
        {
            return;
        }

        lock (_sleepLock)
        {
            Monitor.PulseAll(_sleepLock);
        }
    }

    // Internal, not private, only so the layout tests can name these lines in [UnsafeAccessor] signatures
    // (UnsafeAccessorType does not support value types); neither is part of the public surface. HotLine is the block a
    // semaphore of the public constructor owns: the count with a line of padding each side.
    [StructLayout(LayoutKind.Explicit, Size = 3 * CacheLine.Size)]
    internal struct HotLine
    {
        [FieldOffset(CacheLine.Size)]
        public long Count;
    }

    [StructLayout(LayoutKind.Explicit, Size = 2 * CacheLine.Size)]
    internal struct StatsLine
    {
        [FieldOffset(0)]
        public long WriteAcquisitions;

        [FieldOffset(8)]
        public long ContendedReads;

        [FieldOffset(16)]
        public long ContendedWrites;

        [FieldOffset(24)]
        public long ReadWaitTicks;

        [FieldOffset(32)]
        public long WriteWaitTicks;

        [FieldOffset(40)]
        public long WriteHoldTicks;

        [FieldOffset(48)]
        public long WriteStart;
    }
}
