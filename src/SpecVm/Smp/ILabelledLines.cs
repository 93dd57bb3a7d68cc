namespace SpecVm.Smp;

/// <summary>
/// Native (or pinned) memory whose cache lines the virtual-time simulator should name in its shared-line tally (an
/// address space's lock block): registered with <see cref="Machine.AddLabelledLines"/>.
/// </summary>
internal unsafe interface ILabelledLines
{
    /// <summary>What the 64-byte line at <paramref name="p"/> holds, or null if it is none of these lines.</summary>
    /// <param name="p">Any address in the line.</param>
    string? LineLabel(byte* p);
}
