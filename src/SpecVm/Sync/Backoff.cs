using System.Runtime.CompilerServices;

namespace SpecVm.Sync;

/// <summary>
/// The one spin-wait policy of the library: every wait loop on real threads (the mmap lock, page-table locks, the
/// per-CPU frame caches, shootdown acknowledgements, SRCU grace periods, CPUs leaving an address space, VMA snapshot
/// retries) steps a <see cref="Backoff"/> instead of writing its own constants.
/// </summary>
/// <remarks>
/// <para>Escalation, the same everywhere:</para>
/// <list type="number">
/// <item><b>Spin</b> — <see cref="Spin"/>: the pause hint (<see cref="CpuRelax.Pause"/>), then the waiter's
/// <see cref="ISpinWaiter.Relax"/> (a CPU of the model serves its IPIs there, and its hard-lockup watchdog counts),
/// for the phase's length: <see cref="SpinSteps"/> for lock-like waits, which are short when nothing is wrong;
/// <see cref="TimeSharedSpinSteps"/> when the machine has more CPUs than the host gives it cores (the holder may be
/// waiting for our core: spinning a whole phase keeps it off); <see cref="GracePeriodSpinSteps"/> for a grace-period
/// waiter, which waits for every reader and is not latency-critical; <see cref="RetrySpinSteps"/> for a retry loop
/// whose every step redoes real work.</item>
/// <item><b>Escalate</b> once the phase is spent. A wait that may sleep (the mmap lock, a grace period) blocks
/// (Linux's <c>rwsem_down_read_slowpath</c> after optimistic spinning, <c>schedule_timeout</c>) and starts a new
/// phase when it wakes. A wait that must stay awake (a spinlock, an acknowledgement that only a running target can
/// send) yields the host thread once (<see cref="SpinOrYield"/>) and starts a new phase: a real CPU never needs to,
/// but a host thread's target may have been preempted by the host.</item>
/// <item><b>Watchdog</b>: callers read the clock only when a phase ends (a yield or a sleep), never while spinning.</item>
/// </list>
/// <para>
/// A simulated CPU (virtual time) never spins on the host: its loops wait in virtual time instead
/// (<c>VirtualTime.WaitOn</c> on the line they watch, or the simulator's relax), since the CPU it waits for
/// runs only when this one yields. Those waits are the simulator's, not this policy's.
/// </para>
/// <para>
/// The struct is a counter on the waiter's stack: no allocation, no shared state, nothing on any path that did not
/// have to wait.
/// </para>
/// </remarks>
internal struct Backoff
{
    /// <summary>
    /// Spin steps of a lock-like wait before it escalates: a few tens of microseconds of pause hints on current x86 (a
    /// <c>PAUSE</c> is ~40 cycles on older cores, ~140 on Skylake and later), longer than any critical section of the
    /// model when nothing is wrong.
    /// </summary>
    public const int SpinSteps = 2000;

    /// <summary>Spin steps before escalating when the machine's CPUs share host cores (more CPUs than cores).</summary>
    public const int TimeSharedSpinSteps = 256;

    /// <summary>Spin steps of a grace-period waiter before it sleeps: it waits for readers it cannot hurry.</summary>
    public const int GracePeriodSpinSteps = 128;

    /// <summary>
    /// Steps of a retry loop whose every step redoes real work (a snapshot of every VMA retaken after a writer's
    /// change) before it yields to the writer.
    /// </summary>
    public const int RetrySpinSteps = 16;

    private readonly int _phase;
    private int _spins;

    /// <summary>A policy whose spin phase lasts <paramref name="spinSteps"/> steps.</summary>
    /// <param name="spinSteps">One of <see cref="SpinSteps"/>, <see cref="TimeSharedSpinSteps"/>, <see cref="GracePeriodSpinSteps"/>.</param>
    public Backoff(int spinSteps)
    {
        _phase = spinSteps;
        _spins = 0;
    }

    /// <summary>A lock-like wait: <see cref="SpinSteps"/>, or <see cref="TimeSharedSpinSteps"/> when CPUs share cores.</summary>
    public static Backoff ForLock(bool timeShared = false) => new(timeShared ? TimeSharedSpinSteps : SpinSteps);

    /// <summary>Escalations so far (yields or sleeps): how long the wait has lasted, in phases.</summary>
    public int Escalations { readonly get; private set; }

    /// <summary>
    /// One spin step (pause, then <paramref name="waiter"/>'s relax) while the phase lasts; false, without spinning,
    /// once it is spent: the caller escalates (sleeps) and calls <see cref="Escalated"/>.
    /// </summary>
    /// <param name="waiter">Served at each step; may be null.</param>
    /// <returns>True when the step spun; false when the caller should escalate now.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Spin(ISpinWaiter? waiter)
    {
        if (!Step())
        {
            return false;
        }

        CpuRelax.Pause();
        waiter?.Relax();
        return true;
    }

    /// <summary>
    /// Counts one step of the phase without spinning, for a wait that does its own waiting (a simulated CPU's wait in
    /// virtual time); false once the phase is spent.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Step()
    {
        if (_spins >= _phase)
        {
            return false;
        }

        _spins++;
        return true;
    }

    /// <summary>The caller escalated (slept or yielded): a new spin phase starts.</summary>
    public void Escalated()
    {
        _spins = 0;
        Escalations++;
    }

    /// <summary>
    /// For waits that must stay awake: one spin step, or, when the phase is spent, a yield of the host thread and a new
    /// phase.
    /// </summary>
    /// <param name="waiter">Served at each spin step; may be null.</param>
    /// <returns>True when this step yielded: the moment to look at a watchdog's clock.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool SpinOrYield(ISpinWaiter? waiter)
    {
        if (Spin(waiter))
        {
            return false;
        }

        Thread.Yield();
        Escalated();
        return true;
    }

    /// <summary>
    /// One step of a wait that must stay awake and has no line of its own to wait on: on a simulated CPU, one bounded
    /// wait in virtual time (a host spin would never let the CPU it waits for run); otherwise <see cref="SpinOrYield"/>.
    /// </summary>
    /// <param name="waiter">Served at each step; may be null.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WaitStep(ISpinWaiter? waiter)
    {
        SimContext? sim = VirtualTime.Current;
        if (sim != null)
        {
            sim.Relax();
            return;
        }

        SpinOrYield(waiter);
    }
}
