namespace SpecVm.Mm;

/// <summary>A copy of one VMA's range, protection and backing, taken by <see cref="VmaIndex.Snapshot"/>.</summary>
/// <param name="Start">The first address.</param>
/// <param name="End">One past the last address.</param>
/// <param name="Protection">The protection.</param>
/// <param name="Kind">The backing kind.</param>
/// <param name="File">The file, for file mappings.</param>
/// <param name="FilePageOffset">The file page that <paramref name="Start"/> maps.</param>
public readonly record struct VmaInfo(ulong Start, ulong End, Protection Protection, MappingKind Kind, SimFile? File, long FilePageOffset)
{
    /// <summary>Bytes covered.</summary>
    public ulong Length => End - Start;

    /// <inheritdoc/>
    public override string ToString() =>
        $"vma [0x{Start:x}, 0x{End:x}) {Protection} {Kind}{(File != null ? $" file {File.Id} @page {FilePageOffset}" : "")}";
}
