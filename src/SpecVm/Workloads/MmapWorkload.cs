using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Workloads;

/// <summary>
/// will-it-scale's mmap tests on the model (antonblanchard/will-it-scale, tests/mmap1.c and mmap2.c): each task loops
/// map <see cref="MappingBytes"/> (128 MiB by default) read-write and unmap it at once, touching nothing. One
/// operation is one map-and-unmap pair.
/// </summary>
/// <remarks>
/// <para>
/// Nothing is faulted in, so no page is zapped and no TLB is shot down: each operation is two mmap-lock write
/// sections (the map, and the unmap up to its downgrade) and the VMA index updates between them. The curve is the
/// mmap lock's write side alone: no fault is taken, so the fault strategies should differ only by noise. Tasks in one
/// address space may place their mappings next to each other, and then their VMAs merge and split as on Linux
/// (<c>vma_merge</c>).
/// </para>
/// <para>
/// A batch is <see cref="PairsPerBatch"/> pairs. In <see cref="WorkloadMode.Threads"/> all tasks share one address
/// space (mmap1_threads); file-backed variants give each task its own <see cref="SimFile"/> of the mapping's size
/// (will-it-scale's unlinked, ftruncated per-task file).
/// </para>
/// </remarks>
public abstract class MmapWorkload : Workload
{
    /// <summary>will-it-scale's mapping size, 128 MiB.</summary>
    public const long DefaultMappingBytes = 128L << 20;

    /// <summary>
    /// Map-and-unmap pairs per batch: a pair of untouched mappings costs a few microseconds on the model, so 16 keep a
    /// batch well under a millisecond even with the mmap lock contended.
    /// </summary>
    public const int PairsPerBatch = 16;

    private readonly MappingKind _kind;
    private AddressSpace[] _spaces = [];
    private SimFile?[] _files = [];

    /// <summary>Creates the workload.</summary>
    /// <param name="kind">The backing of the mapping.</param>
    /// <param name="mappingBytes">Bytes mapped per operation: a positive multiple of 4 KiB.</param>
    /// <param name="mode">Threads (one address space) or processes (one each).</param>
    protected MmapWorkload(MappingKind kind, long mappingBytes, WorkloadMode mode)
    {
        if (mappingBytes <= 0 || mappingBytes % Memory.PhysicalMemory.PageSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(mappingBytes), mappingBytes, "The mapping size must be a positive multiple of 4096 bytes.");
        }

        _kind = kind;
        MappingBytes = mappingBytes;
        Mode = mode;
    }

    /// <summary>Bytes mapped per operation.</summary>
    public long MappingBytes { get; }

    /// <summary>Threads or processes.</summary>
    public WorkloadMode Mode { get; }

    /// <summary>The test's number (mmap1, mmap2).</summary>
    protected abstract int Number { get; }

    /// <inheritdoc/>
    public override string Name => WorkloadCatalog.ModeName($"mmap{Number}", Mode);

    /// <inheritdoc/>
    public override string OperationUnit => "map-unmap pairs";

    /// <inheritdoc/>
    public override long MemoryBytes(int threads) => 32L << 20; // Nothing is touched: page tables at most.

    /// <inheritdoc/>
    public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(strategy);
        _spaces = new AddressSpace[threads];
        _files = new SimFile?[threads];
        AddressSpace? shared = Mode == WorkloadMode.Threads ? new AddressSpace(machine, strategy, AddressSpaceOptions) : null;
        for (int i = 0; i < threads; i++)
        {
            _spaces[i] = shared ?? new AddressSpace(machine, strategy, AddressSpaceOptions);
            _files[i] = _kind == MappingKind.Anonymous ? null : new SimFile(machine, MappingBytes);
        }
    }

    /// <inheritdoc/>
    public override long RunOperationBatch(Cpu cpu, int task)
    {
        AddressSpace mm = _spaces[task];
        SimFile? file = _files[task];
        ulong length = (ulong)MappingBytes;
        for (int i = 0; i < PairsPerBatch; i++)
        {
            ulong a = mm.Map(cpu, length, Protection.ReadWrite, _kind, file);
            mm.Unmap(cpu, a, length);
        }

        return PairsPerBatch;
    }

    /// <inheritdoc/>
    public override IEnumerable<AddressSpace> AddressSpaces => _spaces.Distinct();

    /// <inheritdoc/>
    public override IEnumerable<SimFile> Files => _files.OfType<SimFile>();

    /// <inheritdoc/>
    public override void Teardown()
    {
        foreach (AddressSpace mm in _spaces.Distinct())
        {
            mm.Dispose();
        }

        foreach (SimFile? f in _files)
        {
            f?.Dispose();
        }

        _spaces = [];
        _files = [];
    }
}

/// <summary>will-it-scale mmap1 ("Anonymous memory mmap/munmap of 128MB"): private anonymous mappings, untouched.</summary>
/// <param name="mappingBytes">Bytes mapped per operation (default 128 MiB).</param>
/// <param name="mode">Threads or processes.</param>
public sealed class Mmap1(long mappingBytes = MmapWorkload.DefaultMappingBytes, WorkloadMode mode = WorkloadMode.Threads)
    : MmapWorkload(MappingKind.Anonymous, mappingBytes, mode)
{
    /// <inheritdoc/>
    protected override int Number => 1;
}

/// <summary>
/// will-it-scale mmap2 ("Separate file mmap/munmap of 128MB"): a private read-write mapping (<c>MAP_PRIVATE</c>) of
/// the task's own file, untouched. Against mmap1 it adds the file's mapping count to each map and unmap.
/// </summary>
/// <param name="mappingBytes">Bytes mapped per operation, and the file's size (default 128 MiB).</param>
/// <param name="mode">Threads or processes.</param>
public sealed class Mmap2(long mappingBytes = MmapWorkload.DefaultMappingBytes, WorkloadMode mode = WorkloadMode.Threads)
    : MmapWorkload(MappingKind.PrivateFile, mappingBytes, mode)
{
    /// <inheritdoc/>
    protected override int Number => 2;
}
