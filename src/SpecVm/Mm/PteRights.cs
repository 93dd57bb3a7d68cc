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
    /// <param name="frameState">The frame's state once mapped (<see cref="FrameState.Anonymous"/>, <see cref="FrameState.PageCache"/> or <see cref="FrameState.ZeroPage"/>).</param>
    public static ulong For(Vma vma, FrameState frameState)
    {
        ArgumentNullException.ThrowIfNull(vma);
        Protection p = vma.Protection;
        if (p == Protection.None)
        {
            return 0; // Present but not user-accessible: every access faults, and the VMA says no.
        }

        ulong flags = Pte.User | ((p & Protection.Execute) == 0 ? Pte.NoExecute : 0);
        // The shared zero page is never writable, whatever the VMA allows: a write faults and gets a private copy
        // (Linux maps it with pte_mkspecial and no write bit; mprotect's can_change_pte_writable refuses it too).
        if ((p & Protection.Write) != 0 && frameState != FrameState.ZeroPage && (frameState == FrameState.Anonymous || vma.Kind == MappingKind.SharedFile))
        {
            flags |= Pte.Writable;
        }

        return flags;
    }
}
