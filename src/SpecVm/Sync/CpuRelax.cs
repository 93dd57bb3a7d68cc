using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace SpecVm.Sync;

/// <summary><c>cpu_relax()</c>: the pause hint that every spin loop issues once per iteration (through <c>Backoff</c>, the library's one spin-wait policy).</summary>
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
}
