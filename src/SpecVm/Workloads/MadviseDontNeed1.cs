using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Workloads;

/// <summary>
/// A madvise(MADV_DONTNEED) test in will-it-scale's style, SpecVm's own: each task maps its own region of
/// <see cref="RegionBytes"/> (128 MiB by default) once, then loops over it a chunk of <see cref="ChunkBytes"/> (1 MiB)
/// at a time: write one byte to each 4 KiB page of the chunk, then drop the chunk with
/// <c>madvise(MADV_DONTNEED)</c> (<see cref="AddressSpace.DontNeed"/>). One operation is one page touched.
/// </summary>
/// <remarks>
/// <para>
/// Upstream will-it-scale has no madvise test; Dave Hansen's fork has <c>tests/madvise_dontneed.c</c>, which maps
/// 128 MiB per round and drops every page as soon as it is written (one madvise, and one TLB flush, per page; that
/// per-page loop is <see cref="TlbFlush1"/>'s, on a file). This test batches the drop: one madvise of 256 pages,
/// so the zap's <c>mmu_gather</c> and the TLB flush are amortised, as an allocator that returns memory in chunks
/// does. It is <c>database-load</c>'s loader loop without the writer, with a 1 MiB drop instead of the whole slice.
/// </para>
/// <para>
/// In <see cref="WorkloadMode.Threads"/> all tasks share one address space: every fault takes the strategy's read
/// path, every madvise the mmap lock for read and a shootdown of the other CPUs. The regions are mapped at setup, each
/// by its own call, on CPU 0; adjacent anonymous regions merge into one VMA, as on Linux. A batch is one chunk.
/// </para>
/// </remarks>
public sealed class MadviseDontNeed1 : Workload
{
    /// <summary>Default region per task: 128 MiB, will-it-scale's mapping size.</summary>
    public const long DefaultRegionBytes = 128L << 20;

    /// <summary>Bytes touched, then dropped, per madvise: 1 MiB (256 pages), also one batch.</summary>
    public const long ChunkBytes = 1L << 20;

    private const ulong Page = Memory.PhysicalMemory.PageSize;

    private AddressSpace[] _spaces = [];
    private TaskSlot[] _slots = [];

    /// <summary>Creates the workload.</summary>
    /// <param name="regionBytes">Bytes each task maps at setup: a positive multiple of <see cref="ChunkBytes"/>.</param>
    /// <param name="mode">Threads (one address space) or processes (one each).</param>
    public MadviseDontNeed1(long regionBytes = DefaultRegionBytes, WorkloadMode mode = WorkloadMode.Threads)
    {
        if (regionBytes <= 0 || regionBytes % ChunkBytes != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(regionBytes), regionBytes, $"The region size must be a positive multiple of {ChunkBytes} bytes (one chunk).");
        }

        RegionBytes = regionBytes;
        Mode = mode;
    }

    /// <summary>Bytes each task maps at setup and walks chunk by chunk.</summary>
    public long RegionBytes { get; }

    /// <summary>Threads or processes.</summary>
    public WorkloadMode Mode { get; }

    /// <inheritdoc/>
    public override string Name => WorkloadCatalog.ModeName("madvise-dontneed1", Mode);

    /// <inheritdoc/>
    public override string OperationUnit => "pages touched";

    /// <inheritdoc/>
    public override long MemoryBytes(int threads) =>
        // At most one chunk per task is resident (plus the frames of a drop waiting for its flush), and the region's
        // page tables: one 4 KiB PTE table per 2 MiB. Twice that, and 64 MiB.
        (threads * ((2 * ChunkBytes) + (RegionBytes / 512)) * 2) + (64L << 20);

    /// <inheritdoc/>
    public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(strategy);
        _spaces = new AddressSpace[threads];
        _slots = new TaskSlot[threads];
        AddressSpace? shared = Mode == WorkloadMode.Threads ? new AddressSpace(machine, strategy, AddressSpaceOptions) : null;
        for (int i = 0; i < threads; i++)
        {
            _spaces[i] = shared ?? new AddressSpace(machine, strategy, AddressSpaceOptions);
        }

        ulong length = (ulong)RegionBytes;
        AddressSpace[] spaces = _spaces;
        TaskSlot[] slots = _slots;
        machine.Run(0, cpu =>
        {
            for (int i = 0; i < spaces.Length; i++)
            {
                slots[i].Base = spaces[i].Map(cpu, length, Protection.ReadWrite);
            }
        });
    }

    /// <inheritdoc/>
    public override long RunOperationBatch(Cpu cpu, int task)
    {
        ref TaskSlot s = ref _slots[task];
        AddressSpace mm = _spaces[task];
        ulong chunk = s.Base + s.Offset;
        for (ulong off = 0; off < (ulong)ChunkBytes; off += Page)
        {
            mm.Write(cpu, chunk + off, (byte)1);
        }

        mm.DontNeed(cpu, chunk, (ulong)ChunkBytes);
        s.Offset += (ulong)ChunkBytes;
        if (s.Offset == (ulong)RegionBytes)
        {
            s.Offset = 0;
        }

        return (long)((ulong)ChunkBytes / Page);
    }

    /// <inheritdoc/>
    public override IEnumerable<AddressSpace> AddressSpaces => _spaces.Distinct();

    /// <inheritdoc/>
    public override void Teardown()
    {
        foreach (AddressSpace mm in _spaces.Distinct())
        {
            mm.Dispose();
        }

        _spaces = [];
        _slots = [];
    }
}
