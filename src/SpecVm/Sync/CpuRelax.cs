using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace SpecVm.Sync;

/// <summary><c>cpu_relax()</c>: the pause hint that every spin loop issues once per iteration.</summary>
internal static class CpuRelax
{
    /// <summary>Hints the core that this is a spin-wait (x86 <c>PAUSE</c>; a yield-free no-op elsewhere).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Pause()
    {
        if (X86Base.IsSupported)
        {
            X86Base.Pause();
        }
        else
        {
            Thread.SpinWait(1);
        }
    }

    /// <summary>
    /// One step of a spin-wait loop: the pause hint, then <paramref name="waiter"/>'s <see cref="ISpinWaiter.Relax"/>
    /// (serving interrupts); on a simulated CPU, one bounded wait in virtual time instead (a host spin would never let
    /// the CPU it waits for run).
    /// </summary>
    /// <param name="waiter">The waiting context, or null.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Step(ISpinWaiter? waiter)
    {
        SimContext? sim = VirtualTime.Current;
        if (sim != null)
        {
            sim.Relax();
            return;
        }

        Pause();
        waiter?.Relax();
    }
}
