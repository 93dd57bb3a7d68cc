using System.Runtime.CompilerServices;

namespace SpecVm.Paging;

/// <summary>
/// A page-table entry: an unsafe struct over one <see cref="ulong"/> with the x86-64 bit layout SpecVm uses at every
/// level (upper levels use <see cref="Present"/>, <see cref="Writable"/>, <see cref="User"/> and the PFN; a PMD entry
/// with <see cref="Huge"/> is a leaf that maps a 2 MiB page).
/// </summary>
/// <remarks>
/// <code>
///  63  62        52 51                                  12 11  8  7   6   5  4 3  2   1   0
/// +----+-----------+--------------------------------------+-----+----+---+---+----+---+---+---+
/// | NX |  (free)   |             PFN (40 bits)            |     | PS | D | A |    | U | W | P |
/// +----+-----------+--------------------------------------+-----+----+---+---+----+---+---+---+
/// </code>
/// PS is meaningful only in a PMD entry (x86's page-size bit: the entry maps 512 contiguous frames from its PFN, a
/// 2 MiB-aligned block); in a PTE it is never set (x86 reuses it as PAT there, which SpecVm does not model).
/// </remarks>
internal readonly struct Pte : IEquatable<Pte>
{
    /// <summary>Present (P).</summary>
    public const ulong Present = 1UL << 0;

    /// <summary>Writable (R/W).</summary>
    public const ulong Writable = 1UL << 1;

    /// <summary>User accessible (U/S).</summary>
    public const ulong User = 1UL << 2;

    /// <summary>Accessed (A).</summary>
    public const ulong Accessed = 1UL << 5;

    /// <summary>Dirty (D).</summary>
    public const ulong Dirty = 1UL << 6;

    /// <summary>
    /// Page size (PS), in a PMD entry only: the entry is a leaf mapping a 2 MiB page (Linux <c>_PAGE_PSE</c>,
    /// <c>pmd_trans_huge</c>) instead of pointing at a PTE table.
    /// </summary>
    public const ulong Huge = 1UL << 7;

    /// <summary>No-execute (NX).</summary>
    public const ulong NoExecute = 1UL << 63;

    /// <summary>The PFN field.</summary>
    public const ulong PfnMask = ((1UL << 40) - 1) << 12;

    /// <summary>The largest PFN a PTE can hold.</summary>
    public const long MaxPfn = (1L << 40) - 1;

    /// <summary>The raw value.</summary>
    public readonly ulong Value;

    /// <summary>Wraps a raw value.</summary>
    /// <param name="value">The raw entry.</param>
    public Pte(ulong value) => Value = value;

    /// <summary>Makes an entry mapping <paramref name="pfn"/> with <paramref name="flags"/>.</summary>
    /// <param name="pfn">The frame (0..<see cref="MaxPfn"/>).</param>
    /// <param name="flags">Flag bits (any of the constants above except the PFN).</param>
    public static Pte Make(long pfn, ulong flags)
    {
        if ((ulong)pfn > MaxPfn)
        {
            throw new ArgumentOutOfRangeException(nameof(pfn), pfn, $"PFN must be in 0..{MaxPfn}.");
        }

        return new Pte(((ulong)pfn << 12) | (flags & ~PfnMask));
    }

    /// <summary>True if the entry maps something.</summary>
    public bool IsPresent
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (Value & Present) != 0;
    }

    /// <summary>True if writes are allowed.</summary>
    public bool IsWritable => (Value & Writable) != 0;

    /// <summary>True if user accesses are allowed.</summary>
    public bool IsUser => (Value & User) != 0;

    /// <summary>True if the page was accessed.</summary>
    public bool IsAccessed => (Value & Accessed) != 0;

    /// <summary>True if the page was written.</summary>
    public bool IsDirty => (Value & Dirty) != 0;

    /// <summary>True if this (PMD) entry maps a 2 MiB page (<see cref="Huge"/>).</summary>
    public bool IsHuge => (Value & Huge) != 0;

    /// <summary>True if instruction fetch is forbidden.</summary>
    public bool IsNoExecute => (Value & NoExecute) != 0;

    /// <summary>The mapped frame number.</summary>
    public long Pfn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (long)((Value & PfnMask) >> 12);
    }

    /// <summary>The entry with <paramref name="flags"/> set.</summary>
    /// <param name="flags">Bits to set.</param>
    public Pte With(ulong flags) => new(Value | (flags & ~PfnMask));

    /// <summary>The entry with <paramref name="flags"/> cleared.</summary>
    /// <param name="flags">Bits to clear.</param>
    public Pte Without(ulong flags) => new(Value & ~(flags & ~PfnMask));

    /// <inheritdoc/>
    public bool Equals(Pte other) => Value == other.Value;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Pte other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => Value.GetHashCode();

    /// <summary>Equality of raw values.</summary>
    /// <param name="left">One entry.</param>
    /// <param name="right">The other.</param>
    public static bool operator ==(Pte left, Pte right) => left.Value == right.Value;

    /// <summary>Inequality of raw values.</summary>
    /// <param name="left">One entry.</param>
    /// <param name="right">The other.</param>
    public static bool operator !=(Pte left, Pte right) => left.Value != right.Value;

    /// <inheritdoc/>
    public override string ToString() => IsPresent
        ? $"pfn {Pfn} {(IsWritable ? "W" : "-")}{(IsUser ? "U" : "-")}{(IsAccessed ? "A" : "-")}{(IsDirty ? "D" : "-")}{(IsNoExecute ? "X" : "-")}{(IsHuge ? " 2M" : "")}"
        : Value == 0 ? "none" : $"not-present 0x{Value:x}";
}
