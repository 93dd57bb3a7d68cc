using System.Runtime.CompilerServices;

namespace SpecVm.Smp;

/// <summary>The protocol decision points where tests may inject delays, forced aborts and forced trylock failures.</summary>
internal enum HookPoint
{
    /// <summary>Speculative fault: the VMA was found, its sequence count not yet read.</summary>
    SpecAfterLookup,

    /// <summary>Speculative fault: the sequence count was read (even); the frame is not prepared yet.</summary>
    SpecAfterSeqRead,

    /// <summary>Speculative fault: interrupts are off, the walk is done, the PTL is about to be tried.</summary>
    SpecBeforePtlTryLock,

    /// <summary>Speculative fault: the PTL is held; the sequence count is about to be rechecked.</summary>
    SpecBeforeRecheck,

    /// <summary>Per-VMA-lock fault: the VMA was found, not yet read-locked.</summary>
    VmaLockAfterLookup,

    /// <summary>Unmap/Protect: the VMAs are marked (sequence odd, write-locked); the new index is not published yet.</summary>
    WriterBeforeIndexPublish,

    /// <summary>Unmap/Protect: the new index is published.</summary>
    WriterAfterIndexPublish,

    /// <summary>Unmap/DontNeed/Protect: PTEs are zapped or changed; the shootdown has not started.</summary>
    WriterBetweenZapAndShootdown,

    /// <summary>Unmap/DontNeed: the shootdown is acknowledged; frames and page tables are about to be freed.</summary>
    WriterAfterShootdown,
}

/// <summary>What a hook handler tells the code at a <see cref="HookPoint"/>.</summary>
internal enum HookAction
{
    /// <summary>Go on normally.</summary>
    Continue,

    /// <summary>Speculative and per-VMA-lock points: abort the attempt as if validation failed (then fall back).</summary>
    ForceAbort,

    /// <summary><see cref="HookPoint.SpecBeforePtlTryLock"/>: make the trylock fail.</summary>
    FailTryLock,
}

/// <summary>
/// Interleaving hooks of one <see cref="Machine"/>: a handler that the protocol code calls at each
/// <see cref="HookPoint"/>, on the CPU that reached it. A handler may block (park the CPU), delay, or return a
/// <see cref="HookAction"/>. The calls are compiled only into Debug builds of SpecVm: a Release build (the NuGet
/// package) never calls the handler and pays nothing.
/// </summary>
internal sealed class InterleavingHooks
{
    private Func<HookPoint, Cpu, HookAction>? _handler;

    /// <summary>True when this build of SpecVm calls hooks (Debug builds).</summary>
    public static bool CompiledIn =>
#if DEBUG
        true;
#else
        false;
#endif

    /// <summary>The handler; null (the default) for none. Set it before CPUs run the code under test.</summary>
    public Func<HookPoint, Cpu, HookAction>? Handler
    {
        get => Volatile.Read(ref _handler);
        set => Volatile.Write(ref _handler, value);
    }

    /// <summary>Calls the handler, if any, for <paramref name="point"/> on <paramref name="cpu"/>.</summary>
    /// <param name="point">Where the code is.</param>
    /// <param name="cpu">The CPU that reached it.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal HookAction Fire(HookPoint point, Cpu cpu)
    {
        Func<HookPoint, Cpu, HookAction>? h = Volatile.Read(ref _handler);
        return h == null ? HookAction.Continue : h(point, cpu);
    }
}
