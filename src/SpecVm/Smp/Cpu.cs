using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SpecVm.Sync;

namespace SpecVm.Smp;

/// <summary>
/// One simulated CPU: an OS thread pinned to its own core, with an interrupt-disable depth, an IPI inbox, a TLB and
/// per-CPU counters. Code runs "on" a CPU by receiving its <see cref="Cpu"/> (explicit context, no thread-statics).
/// </summary>
/// <remarks>
/// <para>
/// Interrupt points: pending IPIs are served only at <see cref="Poll"/> (every simulated memory access), in spin loops
/// with interrupts enabled (<see cref="Relax"/>), and while waiting for one's own shootdown acks. With interrupts
/// disabled (<see cref="LocalIrqDisable"/>) nothing is served — that is how a lockless page walk is kept safe, and how
/// a CPU spinning on a lock with irqs off deadlocks against a shootdown (caught by the hard-lockup watchdog).
/// </para>
/// <para>
/// A CPU about to sleep marks itself lazy (<see cref="PrepareToBlock"/>); shootdown initiators skip lazy CPUs, and the
/// CPU compares its flushed TLB generation with its address space's when it wakes (<see cref="FinishBlock"/>).
/// </para>
/// <para>
/// Owner-only state (irq depth, TLB, counters) is written only by this CPU's thread. The inbox and the lazy flag are
/// written by others and sit on their own cache lines.
/// </para>
/// </remarks>
public sealed unsafe partial class Cpu : ISpinWaiter
{
    /// <summary>The CPU the current thread runs as: set on each CPU's own thread, and on a thread that attached one.</summary>
    // dotnet/runtime names thread-statics t_; the editorconfig's rule knows only s_ for statics.
#pragma warning disable IDE1006
    [ThreadStatic]
    private static Cpu? t_current;
#pragma warning restore IDE1006

    private readonly Machine _machine;
    private readonly long* _counters;
    private readonly Tlb _tlb;
    private readonly long _watchdogTicks;
    private SharedLine _shared;
    private int _irqDepth;
    private long _irqOffSpinStart;
    private int _irqOffSpins;
    private string _spinTarget = "a lock";
    private long _spinTargetArg = -1;

    // The bound thread's stack, [_stackLow, _stackLow + _stackSize); empty while no thread is bound or the OS cannot
    // say. Written by the binding thread before it runs as this CPU, read by that same thread on every access (a racing
    // wrong thread reads a range its own stack is never in, old or new, and takes the thread-static check).
    private nuint _stackLow;
    private nuint _stackSize;

    internal Cpu(Machine machine, int id, long* counters, int tlbEntries, TimeSpan watchdog)
    {
        _machine = machine;
        Id = id;
        _counters = counters;
        _tlb = new Tlb(tlbEntries);
        _watchdogTicks = (long)(watchdog.TotalSeconds * Stopwatch.Frequency);
        _request = new FlushRequest();
    }

    /// <summary>This CPU's id, 0 to <see cref="Machine.CpuCount"/> - 1.</summary>
    public int Id { get; }

    /// <summary>The machine this CPU belongs to.</summary>
    public Machine Machine => _machine;

    /// <summary>This CPU's TLB.</summary>
    internal Tlb Tlb => _tlb;

    /// <summary>The managed thread id of this CPU's thread (0 before it starts).</summary>
    public int ThreadId { get; internal set; }

    /// <summary>True when the calling thread runs as this CPU (its own thread, or one that attached it).</summary>
    public bool IsCurrentThread => ReferenceEquals(t_current, this);

    /// <summary>The CPU the calling thread runs as, or null on a thread that is no CPU.</summary>
    internal static Cpu? Current => t_current;

    /// <summary>The CPUs this CPU waits for in <see cref="Machine.Run(int, Action{Cpu})"/> (the machine's wait graph; under its lock).</summary>
    internal int[]? WaitingFor { get; set; }

    /// <summary>The OS core this CPU's thread was pinned to, or -1 if it is not pinned.</summary>
    public int Core { get; internal set; } = -1;

    /// <summary>True while interrupts are disabled on this CPU.</summary>
    public bool IrqsDisabled => _irqDepth != 0;

    /// <summary>True while this CPU is lazy (asleep, skipped by shootdowns).</summary>
    internal bool IsLazy => Volatile.Read(ref _shared.Lazy) != 0;

    /// <summary>Bit mask of CPUs with a flush IPI pending here (a racy snapshot).</summary>
    internal ulong PendingIpis => Volatile.Read(ref _shared.Pending);

    /// <summary>Adds <paramref name="delta"/> to one of this CPU's counters (owner only; no atomics).</summary>
    /// <param name="counter">Which counter.</param>
    /// <param name="delta">How much.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Count(CpuCounter counter, long delta = 1) => _counters[(int)counter] += delta;

    /// <summary>Adds one to one of this CPU's registered counters (owner only; no atomics).</summary>
    /// <param name="counter">Which counter.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Count(RegisteredCounter counter) => _counters[counter.Index]++;

    /// <summary>This CPU's value of one counter (a racy read when taken from another thread).</summary>
    /// <param name="counter">Which counter.</param>
    /// <exception cref="ObjectDisposedException">The machine was disposed (the counters went with it).</exception>
    public long Read(CpuCounter counter)
    {
        if ((uint)counter >= (uint)CpuCounter.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(counter), counter, "Unknown counter.");
        }

        return ReadSlot((int)counter);
    }

    /// <summary>This CPU's value of one registered counter (a racy read when taken from another thread).</summary>
    /// <param name="counter">Which counter.</param>
    /// <exception cref="ObjectDisposedException">The machine was disposed (the counters went with it).</exception>
    public long Read(RegisteredCounter counter)
    {
        ArgumentNullException.ThrowIfNull(counter);
        return ReadSlot(counter.Index);
    }

    /// <summary>Slot <paramref name="slot"/> of this CPU's counter block (0 to <see cref="RegisteredCounter.Capacity"/> - 1).</summary>
    internal long ReadSlot(int slot)
    {
        ObjectDisposedException.ThrowIf(_machine.IsDisposed, _machine);

        // Acquire read of the owner's plain increments: a racy but untorn snapshot (64-bit aligned).
        return Volatile.Read(ref _counters[slot]);
    }

    /// <summary>Disables interrupts (<c>local_irq_disable</c>); nests.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void LocalIrqDisable() => _irqDepth++;

    /// <summary>Re-enables interrupts (<c>local_irq_enable</c>) and, at depth zero, serves what arrived meanwhile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void LocalIrqEnable()
    {
        if (_irqDepth <= 0)
        {
            ThrowIrqUnbalanced();
        }

        if (--_irqDepth == 0)
        {
            _irqOffSpinStart = 0;
            Poll();
        }
    }

    /// <summary>An interrupt point: serves pending IPIs if interrupts are enabled.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Poll()
    {
        // Acquire read of our inbox: one load of a line that stays shared in our cache until someone posts.
        if (Volatile.Read(ref _shared.Pending) != 0 && _irqDepth == 0)
        {
            ServeIpis();
        }
    }

    /// <summary>
    /// Takes a page-table lock as this CPU (<c>spin_lock(ptl)</c>, serving IPIs while it spins if interrupts are on) and,
    /// when it had to spin, records the wait in this CPU's PTL wait histogram (<see cref="WaitKind.Ptl"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void LockPtl(ref PtLock ptl)
    {
        long waited = ptl.LockTimed(Id, this);
        if (waited != 0)
        {
            WaitHistogram.Record(this, WaitKind.Ptl, waited);
        }
    }

    /// <summary>Tells the watchdog what the next spin-wait is for (it appears in <see cref="HardLockupException"/>).</summary>
    /// <param name="what">A short description, e.g. "PTL of PTE table"; keep it a constant so this never allocates.</param>
    /// <param name="arg">A number that goes with it (a PFN, a CPU id), or -1.</param>
    public void SetSpinTarget(string what, long arg = -1)
    {
        _spinTarget = what;
        _spinTargetArg = arg;
    }

    /// <inheritdoc/>
    public void Relax()
    {
        SimContext? sim = VirtualTime.Current;
        if (sim != null)
        {
            sim.Relax(); // A simulated CPU spins in virtual time: a bounded park that serves IPIs if it may.
            return;
        }

        if (_irqDepth == 0)
        {
            Poll();
            return;
        }

        // Interrupts off: nothing can be served. The hard-lockup watchdog checks the clock every 1024 spins.
        if ((++_irqOffSpins & 1023) != 0)
        {
            return;
        }

        long now = Stopwatch.GetTimestamp();
        if (_irqOffSpinStart == 0)
        {
            _irqOffSpinStart = now;
        }
        else if (now - _irqOffSpinStart > _watchdogTicks)
        {
            long started = _irqOffSpinStart;
            _irqOffSpinStart = 0;
            throw new HardLockupException(Id, Stopwatch.GetElapsedTime(started, now), _spinTargetArg >= 0 ? $"{_spinTarget} {_spinTargetArg}" : _spinTarget);
        }
    }

    /// <inheritdoc/>
    public void PrepareToBlock()
    {
        if (_irqDepth != 0)
        {
            throw new InvalidOperationException($"CPU {Id} tried to sleep with interrupts disabled (depth {_irqDepth}): a kernel bug (\"BUG: sleeping function called from invalid context\").");
        }

        // Exchange (full fence): lazy must be visible before we stop serving IPIs, and ordered against our read of
        // the inbox below; an initiator that still saw us awake has posted, and we serve that post now or at wake.
        Interlocked.Exchange(ref _shared.Lazy, 1);
        ServeIpis();
    }

    /// <inheritdoc/>
    public void FinishBlock()
    {
        // Exchange (full fence), the other half of a Dekker pair with the initiator (which bumps the generation, then
        // reads our lazy flag): either it saw us awake and posted an IPI, or we see its new generation below.
        Interlocked.Exchange(ref _shared.Lazy, 0);
        CatchUpTlb();
        Poll();
    }

    /// <summary>
    /// Sleeps for <paramref name="duration"/> the way a kernel task sleeps: lazy (skipped by shootdowns) while asleep,
    /// catching up with missed TLB flushes on wake. Throws if interrupts are disabled.
    /// </summary>
    /// <param name="duration">How long; zero just yields the core.</param>
    public void Sleep(TimeSpan duration)
    {
        PrepareToBlock();
        try
        {
            SimContext? sim = VirtualTime.Current;
            if (sim != null)
            {
                sim.Sleep(duration);
            }
            else
            {
                Thread.Sleep(duration);
            }
        }
        finally
        {
            FinishBlock();
        }
    }

    /// <summary>The per-CPU counter block's address (for the machine's sums).</summary>
    internal long* Counters => _counters;

    internal void ResetIrqStateAfterFailure()
    {
        _irqDepth = 0;
        _irqOffSpinStart = 0;
    }

    internal int IrqDepth => _irqDepth;

    /// <summary>Makes the calling thread this CPU (its own thread at start, or an attaching thread).</summary>
    internal void BindCurrentThread()
    {
        t_current = this;
        ThreadStack.TryGetCurrent(out _stackLow, out _stackSize);
    }

    /// <summary>The calling thread stops being this CPU.</summary>
    internal void UnbindCurrentThread()
    {
        if (ReferenceEquals(t_current, this))
        {
            t_current = null;
            _stackSize = 0;
            _stackLow = 0;
        }
    }

    /// <summary>
    /// The access path's "the caller runs as this CPU": true when <paramref name="stackAddress"/>, the address of a local
    /// of the caller, lies in the stack of the thread bound to this CPU (one subtraction and compare, no thread-static);
    /// otherwise the thread-static check decides (a wrong thread, or an OS that would not give the range).
    /// </summary>
    /// <param name="stackAddress">The address of a local of the calling method.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool RunsOnBoundStack(void* stackAddress) => (nuint)stackAddress - _stackLow < _stackSize || IsCurrentThreadSlow();

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool IsCurrentThreadSlow() => IsCurrentThread;

    /// <summary>
    /// The CPU's thread leaves for good (machine disposal): it stays lazy, so that initiators skip it and one that
    /// posted to it already stops waiting for the ack; it leaves its address space's CPU mask and acknowledges
    /// whatever was posted.
    /// </summary>
    internal void GoOffline()
    {
        // Exchange (full fence): lazy is visible before we leave the mask and serve the inbox (already lazy from
        // PrepareToBlock; this makes the state explicit for the exit path).
        Interlocked.Exchange(ref _shared.Lazy, 1);
        SwitchToNone();
        ServeIpis();
        UnbindCurrentThread();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowIrqUnbalanced() =>
        throw new InvalidOperationException($"CPU {Id}: LocalIrqEnable without a matching LocalIrqDisable.");

    /// <summary>The lines other CPUs write: the IPI inbox and the lazy flag, each alone on a line.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 3 * CacheLine.Size)]
    private struct SharedLine
    {
        [FieldOffset(CacheLine.Size)]
        public ulong Pending;

        [FieldOffset(2 * CacheLine.Size)]
        public int Lazy;
    }
}
