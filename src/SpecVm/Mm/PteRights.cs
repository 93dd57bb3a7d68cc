using SpecVm.Memory;
using SpecVm.Paging;

namespace SpecVm.Mm;

/// <summary>
/// The PTE rights a VMA's protection gives a page: one rule, shared by the fault path (SpecVm.Faults.FaultCore) and
/// mprotect (<see cref="AddressSpace.Protect"/>), so a page's rights never depend on which of them wrote its PTE.
/// </summary>
internal static class PteRights
{
    /// <summary>The PTE flags a page of <paramref name="vma"/> gets, for a frame in state <paramref name="frameState"/>.</summary>
    /// <param name="vma">The VMA.</param>
    /// <param name="frameState">The frame's state once mapped (<see cref="FrameState.Anonymous"/> or <see cref="FrameState.PageCache"/>).</param>
    public static ulong For(Vma vma, FrameState frameState)
    {
        ArgumentNullException.ThrowIfNull(vma);
        Protection p = vma.Protection;
        if (p == Protection.None)
        {
            return 0; // Present but not user-accessible: every access faults, and the VMA says no.
        }

        ulong flags = Pte.User | ((p & Protection.Execute) == 0 ? Pte.NoExecute : 0);
        if ((p & Protection.Write) != 0 && (frameState == FrameState.Anonymous || vma.Kind == MappingKind.SharedFile))
        {
            flags |= Pte.Writable;
        }

        return flags;
    }
}
