using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Workloads;

/// <summary>
/// will-it-scale's page_fault tests on the model: each task loops map <see cref="MappingBytes"/> (128 MiB by
/// default), write one byte per 4 KiB page (or read it, for the read-fault tests: <see cref="ReadFaults"/>), unmap.
/// One operation is one page touched.
/// </summary>
/// <remarks>
/// A batch touches up to <see cref="BatchPages"/> pages; the map happens at the start of the first batch of a round
/// and the unmap at the end of the last one, so the loop is exactly will-it-scale's, cut into short steps.
/// File-backed variants give each task its own <see cref="SimFile"/> of the mapping's size (will-it-scale's unlinked
/// per-task file). In <see cref="WorkloadMode.Threads"/> all tasks share one address space.
/// </remarks>
public abstract class PageFaultWorkload : Workload
{
    /// <summary>will-it-scale's mapping size, 128 MiB.</summary>
    public const long DefaultMappingBytes = 128L << 20;

    /// <summary>Pages touched per batch (1 MiB): short enough for clean window edges, long enough to amortise the call.</summary>
    public const int BatchPages = 256;

    private const ulong Page = Memory.PhysicalMemory.PageSize;

    private readonly MappingKind _kind;
    private AddressSpace[] _spaces = [];
    private SimFile?[] _files = [];
    private TaskSlot[] _slots = [];

    /// <summary>Creates the workload.</summary>
    /// <param name="kind">The backing of the mapping.</param>
    /// <param name="mappingBytes">Bytes mapped per round: a positive multiple of 4 KiB.</param>
    /// <param name="mode">Threads (one address space) or processes (one each).</param>
    protected PageFaultWorkload(MappingKind kind, long mappingBytes, WorkloadMode mode)
    {
        if (mappingBytes <= 0 || mappingBytes % (long)Page != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(mappingBytes), mappingBytes, "The mapping size must be a positive multiple of 4096 bytes.");
        }

        _kind = kind;
        MappingBytes = mappingBytes;
        Mode = mode;
    }

    /// <summary>Bytes mapped per round.</summary>
    public long MappingBytes { get; }

    /// <summary>Threads or processes.</summary>
    public WorkloadMode Mode { get; }

    /// <summary>The test's number, 1 to 4 (page_fault1..4).</summary>
    protected abstract int Number { get; }

    /// <summary>
    /// True when the tasks read each page instead of writing it (read faults: page_fault4, page_fault_zero); false,
    /// the default, for will-it-scale's write-fault tests.
    /// </summary>
    protected virtual bool ReadFaults => false;

    /// <inheritdoc/>
    public override string Name => WorkloadCatalog.ModeName($"page-fault{Number}", Mode);

    /// <inheritdoc/>
    public override string OperationUnit => "pages touched";

    /// <inheritdoc/>
    public override long MemoryBytes(int threads)
    {
        // Anonymous: the mapping's frames; private file: page cache plus private copies; shared: page cache. Plus page
        // tables and frames waiting for a flush: a quarter more and 64 MiB.
        long perTask = _kind == MappingKind.PrivateFile ? 2 * MappingBytes : MappingBytes;
        return (threads * perTask * 5 / 4) + (64L << 20);
    }

    /// <summary>
    /// Write faults fill a page: an anonymous one zeroes a fresh page, a private-file one copies the page-cache page
    /// (its working set the file and the copies), a shared-file one is taken as a zeroing (tmpfs fills a new page-cache
    /// page with zeroes; later rounds find it cached, so the floor is then a bound, not the fault's own work). Read
    /// faults map the zero page or a cached page and fill nothing: no floor.
    /// </summary>
    internal override FloorSpec? Floor => ReadFaults ? null : _kind switch
    {
        MappingKind.PrivateFile => new FloorSpec(FloorKind.Copy, 2 * MappingBytes),
        _ => new FloorSpec(FloorKind.Zero, MappingBytes),
    };

    /// <inheritdoc/>
    public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(strategy);
        _spaces = new AddressSpace[threads];
        _files = new SimFile?[threads];
        _slots = new TaskSlot[threads];
        AddressSpace? shared = Mode == WorkloadMode.Threads ? new AddressSpace(machine, strategy, AddressSpaceOptions) : null;
        for (int i = 0; i < threads; i++)
        {
            _spaces[i] = shared ?? new AddressSpace(machine, strategy, AddressSpaceOptions);
            _files[i] = _kind == MappingKind.Anonymous ? null : new SimFile(machine, MappingBytes);
            _slots[i].Random = (ulong)(i + 1) * 0x9E3779B97F4A7C15UL;
        }
    }

    /// <inheritdoc/>
    public override long RunOperationBatch(Cpu cpu, int task)
    {
        ref TaskSlot s = ref _slots[task];
        AddressSpace mm = _spaces[task];
        ulong length = (ulong)MappingBytes;
        if (s.Base == 0)
        {
            s.Base = mm.Map(cpu, length, Protection.ReadWrite, _kind, _files[task]);
            s.Offset = 0;
        }

        ulong end = Math.Min(length, s.Offset + (BatchPages * Page));
        long touched = 0;
        if (ReadFaults)
        {
            for (ulong off = s.Offset; off < end; off += Page)
            {
                _ = mm.Read<byte>(cpu, s.Base + off); // The access is the point: it faults the page in for reading.
                touched++;
            }
        }
        else
        {
            for (ulong off = s.Offset; off < end; off += Page)
            {
                mm.Write(cpu, s.Base + off, (byte)1);
                touched++;
            }
        }

        s.Offset = end;
        if (end == length)
        {
            mm.Unmap(cpu, s.Base, length);
            s.Base = 0;
        }

        return touched;
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
        _slots = [];
    }
}

/// <summary>will-it-scale page_fault1: private anonymous memory.</summary>
/// <param name="mappingBytes">Bytes mapped per round (default 128 MiB).</param>
/// <param name="mode">Threads or processes.</param>
public sealed class PageFault1(long mappingBytes = PageFaultWorkload.DefaultMappingBytes, WorkloadMode mode = WorkloadMode.Threads)
    : PageFaultWorkload(MappingKind.Anonymous, mappingBytes, mode)
{
    /// <inheritdoc/>
    protected override int Number => 1;
}

/// <summary>will-it-scale page_fault2: a private mapping of the task's own file (copy on write from the page cache).</summary>
/// <param name="mappingBytes">Bytes mapped per round (default 128 MiB).</param>
/// <param name="mode">Threads or processes.</param>
public sealed class PageFault2(long mappingBytes = PageFaultWorkload.DefaultMappingBytes, WorkloadMode mode = WorkloadMode.Threads)
    : PageFaultWorkload(MappingKind.PrivateFile, mappingBytes, mode)
{
    /// <inheritdoc/>
    protected override int Number => 2;
}

/// <summary>will-it-scale page_fault3: a shared mapping of the task's own file (page-cache pages dirtied).</summary>
/// <param name="mappingBytes">Bytes mapped per round (default 128 MiB).</param>
/// <param name="mode">Threads or processes.</param>
public sealed class PageFault3(long mappingBytes = PageFaultWorkload.DefaultMappingBytes, WorkloadMode mode = WorkloadMode.Threads)
    : PageFaultWorkload(MappingKind.SharedFile, mappingBytes, mode)
{
    /// <inheritdoc/>
    protected override int Number => 3;
}
