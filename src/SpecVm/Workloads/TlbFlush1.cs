using System.Runtime.CompilerServices;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Workloads;

/// <summary>
/// will-it-scale tlb_flush1 on the model (antonblanchard/will-it-scale, tests/tlb_flush1.c, Kemi Wang 2017, suggested
/// by Dave Hansen: "TLB flush of separate file private mapping"). Each task loops: map a private read-write mapping of
/// its own file (<see cref="MappingBytes"/>, 128 MiB by default); for every 4 KiB page write one byte, drop the page
/// with <c>madvise(MADV_DONTNEED)</c> (<see cref="AddressSpace.DontNeed"/>) and read it back, which must see the file's
/// zero again; unmap. One operation is one page written, dropped and re-read.
/// </summary>
/// <remarks>
/// <para>
/// Every page costs a copy-on-write fault, a single-page zap under the mmap lock for read with a TLB flush, and a read
/// fault that maps the page-cache page. In <see cref="WorkloadMode.Threads"/> all tasks share one address space, so
/// every madvise shoots down the TLBs of the other CPUs running in it (Linux's <c>flush_tlb_mm_range</c> to
/// <c>mm_cpumask</c>): the curve measures shootdown cost as CPUs are added, and <c>--targeted-shootdowns</c>
/// (RadixVM's idea) removes most of it.
/// </para>
/// <para>
/// The read-back is will-it-scale's <c>assert(*(addr + i) == 0)</c>: a value other than 0 means a translation survived
/// the flush, and the batch throws <see cref="InvalidOperationException"/>, which fails the run. A batch handles
/// <see cref="BatchPages"/> pages; the map happens at the start of a round's first batch and the unmap at the end of
/// its last, as in <see cref="PageFaultWorkload"/>.
/// </para>
/// </remarks>
public sealed class TlbFlush1 : Workload
{
    /// <summary>will-it-scale's file and mapping size, 128 MiB.</summary>
    public const long DefaultMappingBytes = 128L << 20;

    /// <summary>
    /// Pages per batch: each page takes two faults and a shootdown (an IPI round trip per other CPU), a few
    /// microseconds on the model, so 64 keep a batch near the quarter millisecond.
    /// </summary>
    public const int BatchPages = 64;

    private const ulong Page = Memory.PhysicalMemory.PageSize;

    private AddressSpace[] _spaces = [];
    private SimFile[] _files = [];
    private TaskSlot[] _slots = [];

    /// <summary>Creates the workload.</summary>
    /// <param name="mappingBytes">Bytes mapped per round, and each task's file size: a positive multiple of 4 KiB.</param>
    /// <param name="mode">Threads (one address space, tlb_flush1_threads) or processes (one each).</param>
    public TlbFlush1(long mappingBytes = DefaultMappingBytes, WorkloadMode mode = WorkloadMode.Threads)
    {
        if (mappingBytes <= 0 || mappingBytes % (long)Page != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(mappingBytes), mappingBytes, "The mapping size must be a positive multiple of 4096 bytes.");
        }

        MappingBytes = mappingBytes;
        Mode = mode;
    }

    /// <summary>Bytes mapped per round (each task's file size).</summary>
    public long MappingBytes { get; }

    /// <summary>Threads or processes.</summary>
    public WorkloadMode Mode { get; }

    /// <inheritdoc/>
    public override string Name => WorkloadCatalog.ModeName("tlb-flush1", Mode);

    /// <inheritdoc/>
    public override string OperationUnit => "pages flushed";

    /// <inheritdoc/>
    public override long MemoryBytes(int threads) =>
        // Every page of each task's file ends up in its page cache (the read-back maps it); private copies live one
        // page at a time. Plus page tables and frames waiting for a flush: a quarter more and 64 MiB.
        (threads * MappingBytes * 5 / 4) + (64L << 20);

    /// <inheritdoc/>
    public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(strategy);
        _spaces = new AddressSpace[threads];
        _files = new SimFile[threads];
        _slots = new TaskSlot[threads];
        AddressSpace? shared = Mode == WorkloadMode.Threads ? new AddressSpace(machine, strategy, AddressSpaceOptions) : null;
        for (int i = 0; i < threads; i++)
        {
            _spaces[i] = shared ?? new AddressSpace(machine, strategy, AddressSpaceOptions);
            _files[i] = new SimFile(machine, MappingBytes);
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
            s.Base = mm.Map(cpu, length, Protection.ReadWrite, MappingKind.PrivateFile, _files[task]);
            s.Offset = 0;
        }

        ulong end = Math.Min(length, s.Offset + (BatchPages * Page));
        long done = 0;
        for (ulong off = s.Offset; off < end; off += Page)
        {
            ulong address = s.Base + off;
            mm.Write(cpu, address, (byte)1);
            mm.DontNeed(cpu, address, Page);
            byte again = mm.Read<byte>(cpu, address);
            if (again != 0)
            {
                ThrowStale(task, address, again);
            }

            done++;
        }

        s.Offset = end;
        if (end == length)
        {
            mm.Unmap(cpu, s.Base, length);
            s.Base = 0;
        }

        return done;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowStale(int task, ulong address, byte value) =>
        throw new InvalidOperationException(
            $"tlb-flush1: task {task} read {value} at 0x{address:x} after MADV_DONTNEED of its private file page (expected the file's 0): a translation survived the TLB flush.");

    /// <inheritdoc/>
    public override IEnumerable<AddressSpace> AddressSpaces => _spaces.Distinct();

    /// <inheritdoc/>
    public override IEnumerable<SimFile> Files => _files;

    /// <inheritdoc/>
    public override void Teardown()
    {
        foreach (AddressSpace mm in _spaces.Distinct())
        {
            mm.Dispose();
        }

        foreach (SimFile f in _files)
        {
            f.Dispose();
        }

        _spaces = [];
        _files = [];
        _slots = [];
    }
}
