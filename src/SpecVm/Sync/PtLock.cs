using System.Runtime.CompilerServices;

namespace SpecVm.Sync;

/// <summary>
/// The page-table lock (Linux split PTL, <c>spinlock_t ptl</c> in <c>struct page</c>): a test-and-test-and-set
/// spinlock with <see cref="TryLock"/>, whose spin loop lets the spinning CPU serve interrupts when it allows them.
/// </summary>
/// <remarks>
/// <para>
/// The lock word holds 0 when free and <c>owner + 1</c> when held, so an unlock by a non-owner is caught and a
/// watchdog can say who holds a lock it is stuck on.
/// </para>
/// <para>
/// This is the lock at the centre of the article's deadlock: the unmap path holds a PTL while it waits for every CPU
/// to acknowledge a TLB flush; a speculative fault that spins on that PTL with interrupts disabled never serves the
/// flush IPI. <see cref="Lock"/> calls <see cref="ISpinWaiter.Relax"/> each iteration; whether that serves the IPI
/// is the CPU's decision (its irq state), exactly as in the kernel.
/// </para>
/// <para>
/// Not copyable, so not public. The lock is a mutable struct so that it can live inside <c>PageFrame</c>
/// at a fixed offset (native memory, 64-byte frames, pinned by the layout tests) without an object header or a
/// pointer chase on the fault path. The price is that a copy (<c>var l = frame.Ptl;</c>, a by-value parameter, a
/// property getter) is a second, independent lock: taking it excludes nobody, silently. C# has no way to forbid
/// copies of a struct that is embedded in other structs (a <c>ref struct</c> cannot be a field of one), so instead
/// the type is internal: users reach the PTL only through the library's own operations
/// (<c>FaultCore.Install</c> takes it around a PTE install), and inside the library the rule is
/// "a field or a <c>ref</c>, never a value", checked by the copy-guard test over the library's source
/// (test/SpecVm.Tests/Sync/SyncCopyGuardTests.cs), which fails the build on a local, parameter, return value or
/// property of this type held by value.
/// </para>
/// </remarks>
internal unsafe struct PtLock
{
    private int _owner;

    /// <summary>True while some owner holds the lock (a racy snapshot).</summary>
    public readonly bool IsLocked => Volatile.Read(in _owner) != 0;

    /// <summary>The owner id holding the lock, or -1 (a racy snapshot).</summary>
    public readonly int Owner => Volatile.Read(in _owner) - 1;

    /// <summary>Takes the lock if it is free (<c>spin_trylock</c>).</summary>
    /// <param name="owner">The caller's id (its CPU id), 0 or more.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryLock(int owner)
    {
        // Test first: a failed CAS still takes the line exclusive; reading first keeps a busy lock's line shared.
        // CAS (full fence): acquiring must order the critical section's reads after the claim.
        VirtualTime.Access(Unsafe.AsPointer(ref _owner), LineAccess.Rmw);
        return Volatile.Read(ref _owner) == 0 && Interlocked.CompareExchange(ref _owner, owner + 1, 0) == 0;
    }

    /// <summary>Takes the lock, spinning until it is free (<c>spin_lock</c>).</summary>
    /// <param name="owner">The caller's id (its CPU id), 0 or more.</param>
    /// <param name="waiter">Called every spin iteration (serves interrupts if the CPU allows them); may be null.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Lock(int owner, ISpinWaiter? waiter)
    {
        if (!TryLock(owner))
        {
            LockSlow(owner, waiter);
        }
    }

    /// <summary>
    /// Takes the lock as <see cref="Lock"/> does and returns how long it spun, in Stopwatch ticks (virtual ticks on a
    /// simulated CPU), or 0 when it took the lock at once: the clock is read only on the slow path. The lock knows no
    /// CPU; the caller records the wait (<c>Cpu.LockPtl</c>).
    /// </summary>
    /// <param name="owner">The caller's id (its CPU id), 0 or more.</param>
    /// <param name="waiter">Called every spin iteration; may be null.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long LockTimed(int owner, ISpinWaiter? waiter) => TryLock(owner) ? 0 : LockSlowTimed(owner, waiter);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private long LockSlowTimed(int owner, ISpinWaiter? waiter)
    {
        long start = VirtualTime.Timestamp();
        LockSlow(owner, waiter);
        return Math.Max(1, VirtualTime.Timestamp() - start);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void LockSlow(int owner, ISpinWaiter? waiter)
    {
        // A racy read is enough: only this owner could have written its own id, so equality is never a false alarm.
        if (Volatile.Read(ref _owner) == owner + 1)
        {
            throw new SynchronizationLockException($"PtLock: owner {owner} tried to take a lock it already holds (self-deadlock).");
        }

        // The library's spin policy (Backoff): spin, serving interrupts through the waiter, and yield the host thread
        // between spin phases (a spinlock never sleeps; the holder may be a preempted host thread). The hung-task
        // watchdog (Debug: Watchdog.DefaultTimeout; Release: none, as spin_lock) reads the clock only at those yields.
        // A spin with interrupts off is caught sooner by the CPU's hard-lockup watchdog.
        long start = 0;
        Backoff backoff = Backoff.ForLock();
        while (true)
        {
            // Spin on a plain (acquire) read until the lock looks free, then try to claim it: test-and-test-and-set.
            while (Volatile.Read(ref _owner) != 0)
            {
                if (VirtualTime.WaitOn(Unsafe.AsPointer(ref _owner)))
                {
                    continue; // A simulated CPU waited (in virtual time, serving IPIs if it may) until the line changed.
                }

                if (backoff.SpinOrYield(waiter))
                {
                    CheckWatchdog(ref start);
                }
            }

            // CAS (full fence): claims the lock and orders the critical section after it, as in TryLock.
            VirtualTime.Access(Unsafe.AsPointer(ref _owner), LineAccess.Rmw);
            if (Interlocked.CompareExchange(ref _owner, owner + 1, 0) == 0)
            {
                return;
            }
        }
    }

    /// <summary>The spin watchdog's limit in Stopwatch ticks (tests shorten it; <see cref="Watchdog.DefaultTimeout"/> otherwise).</summary>
    internal static long WatchdogTicks { get; set; } = Watchdog.ToTicks(Watchdog.DefaultTimeout);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private readonly void CheckWatchdog(ref long start)
    {
        long now = System.Diagnostics.Stopwatch.GetTimestamp();
        if (start == 0)
        {
            start = now;
        }
        else if (now - start > WatchdogTicks)
        {
            throw new HungTaskException(
                $"PtLock: spinning for the page-table lock held by owner {Volatile.Read(in _owner) - 1} (an unlock that never came)",
                System.Diagnostics.Stopwatch.GetElapsedTime(start, now));
        }
    }

    /// <summary>Releases the lock (<c>spin_unlock</c>). Throws if <paramref name="owner"/> does not hold it.</summary>
    /// <param name="owner">The caller's id, the same as when it locked.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unlock(int owner)
    {
        int held = _owner;
        if (held != owner + 1)
        {
            ThrowNotOwner(owner, held - 1);
        }

        // Release: the critical section's stores (PTE installs) are visible before the lock reads as free.
        VirtualTime.Access(Unsafe.AsPointer(ref _owner), LineAccess.Store);
        Volatile.Write(ref _owner, 0);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNotOwner(int owner, int holder) =>
        throw new SynchronizationLockException(holder < 0
            ? $"PtLock.Unlock by owner {owner}: the lock is not held."
            : $"PtLock.Unlock by owner {owner}: the lock is held by owner {holder}.");
}
