using CsCheck;
using SpecVm.Mm;

namespace SpecVm.Tests.Reliability;

/// <summary>What one step of an adversarial sequence does (issue 15's list of mistakes real users make).</summary>
internal enum AdversarialOpKind
{
    Map,
    MapFile,
    MapHuge,
    MapFileOffsetEdge,
    Unmap,
    Protect,
    DontNeed,
    Read,
    Write,
    DisposeAddressSpace,
    DisposeFile,
    DisposeMachine,
    FromNonCpuThread,
    WithIrqsDisabled,
    AccessWithIrqsDisabled,
    ForeignCpu,
    SrcuDoubleUnlock,
    SrcuUnlockWrongIndex,
    SrcuSynchronizeInsideSection,
    SrcuThrowingCallback,
    SrcuBadCpu,
    RwsemExtraExit,
    RwsemWriteWithIrqsOffWhileReadHeld,

    // Planted bugs, never generated: the harness's own tests use them to see each property catch what it exists for.
    PlantMapThenThrow,
    PlantHang,
    PlantUndocumentedException,
    PlantAcceptedMisuse,
}

/// <summary>
/// How an op's address is chosen: relative to a VMA that exists when the step runs (so sequences keep hitting real
/// mappings after shrinking), or an absolute value (edges: 0, the user-space top, 2^63, 2^64 - 4096, random).
/// </summary>
internal readonly record struct Where(bool InVma, int VmaIndex, ulong Value)
{
    public override string ToString() => InVma ? $"vma[{VmaIndex}]+0x{Value:x}" : $"0x{Value:x}";
}

/// <summary>One step: a kind, the CPU it runs on, and its arguments (each op reads the ones it needs).</summary>
internal readonly record struct AdversarialOp(AdversarialOpKind Kind, int Cpu, Where Address, ulong Length, int Protection, int MappingKind, long FileOffset, AdversarialOpKind Inner)
{
    public override string ToString() => Kind switch
    {
        AdversarialOpKind.Map or AdversarialOpKind.MapHuge => $"{Kind}(cpu {Cpu}, len 0x{Length:x}, {(Protection)Protection}, fixed {Address})",
        AdversarialOpKind.MapFile or AdversarialOpKind.MapFileOffsetEdge => $"{Kind}(cpu {Cpu}, len 0x{Length:x}, {(Protection)Protection}, {(MappingKind)MappingKind}, offset {FileOffset}, fixed {Address})",
        AdversarialOpKind.Unmap or AdversarialOpKind.DontNeed => $"{Kind}(cpu {Cpu}, {Address}, len 0x{Length:x})",
        AdversarialOpKind.Protect => $"{Kind}(cpu {Cpu}, {Address}, len 0x{Length:x}, {(Protection)Protection})",
        AdversarialOpKind.Read or AdversarialOpKind.Write => $"{Kind}(cpu {Cpu}, {Address})",
        AdversarialOpKind.AccessWithIrqsDisabled => $"{Kind}(cpu {Cpu}, {(Protection % 2 == 0 ? "Read" : "Write")} {Address})",
        AdversarialOpKind.FromNonCpuThread or AdversarialOpKind.WithIrqsDisabled or AdversarialOpKind.ForeignCpu =>
            $"{Kind}(cpu {Cpu}, {new AdversarialOp(Inner, Cpu, Address, Length, Protection, MappingKind, FileOffset, Inner)})",
        _ => $"{Kind}(cpu {Cpu})",
    };
}

/// <summary>The CsCheck generators of adversarial sequences.</summary>
internal static class AdversarialGen
{
    private const ulong Page = 4096;

    /// <summary>Lengths: mostly small page multiples, often an edge (0, unaligned, near 2^47, 2^63, 2^64), sometimes anything.</summary>
    public static readonly Gen<ulong> Length = Gen.Frequency(
        (6, Gen.Int[1, 32].Select(static p => (ulong)p * Page)),
        (2, Gen.OneOf(Gen.Const(0UL), Gen.Const(1UL), Gen.Const(Page - 1), Gen.Const(Page + 1), Gen.Const(1UL << 47), Gen.Const((1UL << 47) - Page),
            Gen.Const(1UL << 63), Gen.Const((1UL << 63) - Page), Gen.Const(ulong.MaxValue - Page + 1), Gen.Const(ulong.MaxValue))),
        (1, Gen.ULong));

    /// <summary>Lengths for Map and MapFile: small page multiples and small edges (0, unaligned); the huge ones that
    /// can wrap an address are <see cref="HugeLength"/>'s, so that MapHuge can be gated on its own.</summary>
    public static readonly Gen<ulong> MapLength = Gen.Frequency(
        (6, Gen.Int[1, 32].Select(static p => (ulong)p * Page)),
        (2, Gen.OneOf(Gen.Const(0UL), Gen.Const(1UL), Gen.Const(Page - 1), Gen.Const(Page + 1), Gen.Const(1UL << 30))));

    /// <summary>Huge lengths only, the Map-wrapping family.</summary>
    public static readonly Gen<ulong> HugeLength = Gen.OneOf(
        Gen.Const(1UL << 47), Gen.Const(1UL << 63), Gen.Const((1UL << 63) - Page), Gen.Const(1UL << 62),
        Gen.Const(ulong.MaxValue - Page + 1), Gen.Const(ulong.MaxValue), Gen.ULong.Select(static v => v & ~(Page - 1)));

    /// <summary>Addresses: inside an existing VMA (page aligned or not), or an absolute edge, or anything.</summary>
    public static readonly Gen<Where> Address = Gen.Frequency(
        (4, Gen.Select(Gen.Int[0, 7], Gen.Int[0, 8], static (i, p) => new Where(true, i, (ulong)p * Page))),
        (1, Gen.Select(Gen.Int[0, 7], Gen.Int[0, 8], static (i, p) => new Where(true, i, (ulong)p * Page + 1))),
        (2, Gen.OneOf(Gen.Const(0UL), Gen.Const(AddressSpace.MinAddress), Gen.Const(AddressSpace.MmapBase), Gen.Const((1UL << 47) - Page),
            Gen.Const(1UL << 47), Gen.Const(1UL << 63), Gen.Const(ulong.MaxValue - Page + 1), Gen.Const(ulong.MaxValue)).Select(static v => new Where(false, 0, v))),
        (1, Gen.ULong.Select(static v => new Where(false, 0, v))));

    /// <summary>A fixed address for Map: usually none (0 here means "let SpecVm choose"), sometimes an address.</summary>
    public static readonly Gen<Where> FixedAddress = Gen.Frequency((3, Gen.Const(new Where(false, 0, 0))), (1, Address));

    /// <summary>File offsets: aligned and in range, or a small edge (negative, unaligned, past the end); the huge ones
    /// are <see cref="HugeFileOffset"/>'s, so that MapFileOffsetEdge can be gated on its own.</summary>
    public static readonly Gen<long> FileOffset = Gen.Frequency(
        (4, Gen.Int[0, 15].Select(static p => p * (long)Page)),
        (2, Gen.OneOf(Gen.Const(-1L), Gen.Const(-(long)Page), Gen.Const(1L), Gen.Const(16 * (long)Page), Gen.Const(1L << 40))));

    /// <summary>Huge file offsets only, the offsets-near-2^63 family.</summary>
    public static readonly Gen<long> HugeFileOffset = Gen.OneOf(
        Gen.Const(long.MaxValue), Gen.Const(long.MaxValue - (long)Page + 1), Gen.Const((1L << 62) + (1L << 61)), Gen.Const(long.MinValue),
        Gen.Const(-(long)Page), Gen.Long.Select(static v => v & ~((long)Page - 1)));

    /// <summary>Protection bits: mostly the defined ones (Execute included), sometimes an unknown bit.</summary>
    public static readonly Gen<int> Protection = Gen.Frequency((4, Gen.Int[0, 7]), (1, Gen.Int[8, 15]));

    /// <summary>Mapping kinds: mostly defined ones, sometimes an undefined value.</summary>
    public static readonly Gen<int> MappingKind = Gen.Frequency((5, Gen.Int[0, 2]), (1, Gen.Int[3, 255]));

    /// <summary>Every op kind the suite runs: all kinds minus <see cref="AdversarialApiTests.KnownOpenMisuse"/>.</summary>
    public static Gen<AdversarialOpKind> Kinds(IReadOnlySet<AdversarialOpKind> excluded)
    {
        (int, AdversarialOpKind)[] weighted = Enum.GetValues<AdversarialOpKind>()
            .Where(k => !excluded.Contains(k) && k < AdversarialOpKind.PlantMapThenThrow)
            .Select(k => (Weight(k), k))
            .ToArray();
        return Gen.Frequency(weighted);
    }

    /// <summary>The mm operations that the context wrappers (non-CPU thread, irqs off, foreign CPU) apply to.</summary>
    public static readonly Gen<AdversarialOpKind> InnerKind = Gen.OneOf(
        Gen.Const(AdversarialOpKind.Map), Gen.Const(AdversarialOpKind.MapFile), Gen.Const(AdversarialOpKind.Unmap),
        Gen.Const(AdversarialOpKind.Protect), Gen.Const(AdversarialOpKind.DontNeed), Gen.Const(AdversarialOpKind.Read),
        Gen.Const(AdversarialOpKind.Write));

    /// <summary>One op.</summary>
    public static Gen<AdversarialOp> Op(IReadOnlySet<AdversarialOpKind> excluded) =>
        Kinds(excluded).SelectMany(kind => Gen.Select(
            Gen.Int[0, 1],
            kind == AdversarialOpKind.Map || kind == AdversarialOpKind.MapFile || kind == AdversarialOpKind.MapHuge || kind == AdversarialOpKind.MapFileOffsetEdge ? FixedAddress : Address,
            kind switch
            {
                AdversarialOpKind.MapHuge => HugeLength,
                AdversarialOpKind.Map or AdversarialOpKind.MapFile or AdversarialOpKind.MapFileOffsetEdge => MapLength,
                _ => Length,
            },
            Protection,
            MappingKind,
            kind == AdversarialOpKind.MapFileOffsetEdge ? HugeFileOffset : FileOffset,
            InnerKind,
            (cpu, where, length, prot, mapKind, offset, inner) => new AdversarialOp(kind, cpu, where, length, prot, mapKind, offset, inner)));

    /// <summary>A sequence of 1 to <paramref name="maxSteps"/> ops.</summary>
    public static Gen<AdversarialOp[]> Sequence(IReadOnlySet<AdversarialOpKind> excluded, int maxSteps) => Op(excluded).Array[1, maxSteps];

    private static int Weight(AdversarialOpKind kind) => kind switch
    {
        AdversarialOpKind.Map or AdversarialOpKind.MapFile => 6,
        AdversarialOpKind.Unmap or AdversarialOpKind.Protect or AdversarialOpKind.DontNeed => 4,
        AdversarialOpKind.Read or AdversarialOpKind.Write => 4,
        AdversarialOpKind.DisposeAddressSpace or AdversarialOpKind.DisposeFile or AdversarialOpKind.DisposeMachine => 1,
        _ => 2,
    };
}
