using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace SpecVm.Sync;

/// <summary>What one access to a shared cache line does (the cost model prices each kind).</summary>
internal enum LineAccess : byte
{
    /// <summary>A (acquire) load: needs the line shared.</summary>
    Load,

    /// <summary>A (release) store: needs the line exclusive.</summary>
    Store,

    /// <summary>A locked read-modify-write: needs the line exclusive; those on one line serialise.</summary>
    Rmw,
}

/// <summary>Work the cost model prices besides cache lines.</summary>
internal enum SimWork : byte
{
    /// <summary>Zeroing one 4 KiB page (core time and the socket's memory bandwidth).</summary>
    PageZero,

    /// <summary>Copying one 4 KiB page.</summary>
    PageCopy,

    /// <summary>Zapping one present PTE on unmap (page freeing bookkeeping).</summary>
    PageZap,
}

/// <summary>
/// The simulated CPU behind the seam (implemented by <c>SpecVm.Simulation</c>): what the lock primitives, the machine
/// and the page kernels call when the thread they run on is a CPU of a virtual-time simulation.
/// </summary>
internal abstract class SimContext
{
    /// <summary>One access to the shared line of (<paramref name="owner"/>, <paramref name="slot"/>).</summary>
    public abstract void Access(object? owner, nint slot, LineAccess kind);

    /// <summary>
    /// One step of a wait for the line of (<paramref name="owner"/>, <paramref name="slot"/>) to change: returns when
    /// another CPU wrote it, an IPI arrived (if interrupts are on), or a bounded poll interval passed.
    /// </summary>
    public abstract void WaitOn(object? owner, nint slot, bool sleep);

    /// <summary>One spin-wait step on nothing in particular (a poll with backoff).</summary>
    public abstract void Relax();

    /// <summary>Sleeps (lazy) for <paramref name="duration"/> of virtual time.</summary>
    public abstract void Sleep(TimeSpan duration);

    /// <summary>Charges work that is not a line access.</summary>
    public abstract void Work(SimWork work);

    /// <summary>The CPU's virtual clock as <see cref="Stopwatch"/> ticks.</summary>
    public abstract long Timestamp { get; }

    /// <summary>
    /// The CPU's virtual clock as <see cref="Stopwatch"/> ticks, with the local work done since its last event charged
    /// first (<see cref="Timestamp"/> may lag it by that work): for a mark that must fall after everything before it.
    /// </summary>
    public abstract long ChargedTimestamp();

    /// <summary>A flush IPI was posted to <paramref name="target"/>.</summary>
    public abstract void SendIpi(int target);

    /// <summary>This CPU serves the IPIs from the senders in <paramref name="senders"/> (a bit mask), then acks them.</summary>
    public abstract void ServeIpis(ulong senders);
}

/// <summary>
/// The one platform seam between the protocol code and the virtual-time mode (docs/design.md §6): every place where
/// CPUs interact — read-modify-writes and acquire loads of shared words, spin and sleep waits, IPIs, the page kernels,
/// clock reads — calls one of these methods. In the real-thread mode each is a test of one static flag that no thread
/// writes while real-thread code runs, predicted not-taken; the work is in a method that is never inlined. Only a
/// thread that is a CPU of a running simulation ever reaches a <see cref="SimContext"/>.
/// </summary>
internal static class VirtualTime
{
    /// <summary>
    /// True while any simulation runs in the process. A plain field: a real-thread CPU that reads a stale value either
    /// skips the seam (correct: it is no simulated CPU) or takes the slow path and finds no context there (also correct).
    /// </summary>
    internal static bool s_anyActive;

    private static readonly Lock FlagLock = new();
    private static int s_running;

    // dotnet/runtime names thread-statics t_; the editorconfig's rule knows only s_ for statics.
#pragma warning disable IDE1006
    [ThreadStatic]
    private static SimContext? t_context;
#pragma warning restore IDE1006

    /// <summary>The simulated CPU the calling thread is, or null (always null in the real-thread mode).</summary>
    internal static SimContext? Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => s_anyActive ? t_context : null;
    }

    /// <summary>Makes the calling thread simulated CPU <paramref name="context"/> (null: no longer one).</summary>
    internal static void Bind(SimContext? context) => t_context = context;

    /// <summary>A simulation starts: the seams become live in this process.</summary>
    internal static void Started()
    {
        // Under a lock: simulations start and stop on several threads (parallel tests), and the flag must be true
        // whenever the count is not zero (an unlocked decrement-then-write could clear it after a racing start set it).
        lock (FlagLock)
        {
            s_running++;

            // Release: a CPU thread that reads true takes the slow path and finds its own context there; the
            // simulation's CPUs only start after this (their work items are queued afterwards), so they see true.
            Volatile.Write(ref s_anyActive, true);
        }
    }

    /// <summary>A simulation ended.</summary>
    internal static void Stopped()
    {
        lock (FlagLock)
        {
            s_running--;

            // Release, as above; a real-thread CPU that still reads a stale true only takes the slow path once.
            Volatile.Write(ref s_anyActive, s_running != 0);
        }
    }

    /// <summary>An access to a shared line of a managed object (a lock word, a VMA's sequence count).</summary>
    /// <param name="owner">The object whose field it is.</param>
    /// <param name="slot">Which line of it (a small constant).</param>
    /// <param name="kind">What the access does.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Access(object owner, int slot, LineAccess kind)
    {
        if (s_anyActive)
        {
            AccessSlow(owner, slot, kind);
        }
    }

    /// <summary>
    /// An access to a shared line in native memory, or in a pinned array (a PTE, a page-table lock, the mmap lock's count):
    /// the line is named by its address, so two words on one 64-byte line are one line to the simulator.
    /// </summary>
    /// <param name="address">Any address in the line.</param>
    /// <param name="kind">What the access does.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void Access(void* address, LineAccess kind)
    {
        if (s_anyActive)
        {
            AccessSlow(null, (nint)address >> 6, kind);
        }
    }

    /// <summary>
    /// One step of a spin or sleep wait for a managed object's line to change. Returns false in the real-thread mode
    /// (the caller spins or sleeps as usual) and true when a simulated CPU waited in virtual time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool WaitOn(object owner, int slot, bool sleep) => s_anyActive && WaitSlow(owner, slot, sleep);

    /// <summary>As <see cref="WaitOn(object, int, bool)"/>, a spin wait for a line in native (or pinned) memory.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe bool WaitOn(void* address) => s_anyActive && WaitSlow(null, (nint)address >> 6, false);

    /// <summary>As <see cref="WaitOn(object, int, bool)"/>, for a line in native (or pinned) memory.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe bool WaitOn(void* address, bool sleep) => s_anyActive && WaitSlow(null, (nint)address >> 6, sleep);

    /// <summary>Charges work that is not a line access (the page kernels).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Work(SimWork work)
    {
        if (s_anyActive)
        {
            WorkSlow(work);
        }
    }

    /// <summary><see cref="Stopwatch.GetTimestamp"/>, or the simulated CPU's virtual clock in the same unit.</summary>
    internal static long Timestamp()
    {
        SimContext? c = Current;
        return c == null ? Stopwatch.GetTimestamp() : c.Timestamp;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AccessSlow(object? owner, nint slot, LineAccess kind) => t_context?.Access(owner, slot, kind);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool WaitSlow(object? owner, nint slot, bool sleep)
    {
        SimContext? c = t_context;
        if (c == null)
        {
            return false;
        }

        c.WaitOn(owner, slot, sleep);
        return true;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void WorkSlow(SimWork work) => t_context?.Work(work);
}
