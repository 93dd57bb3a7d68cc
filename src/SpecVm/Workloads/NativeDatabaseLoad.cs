using SpecVm.Faults;
using SpecVm.Smp;
using SpecVm.Mm;

namespace SpecVm.Workloads;

/// <summary>
/// <see cref="DatabaseLoad"/> against the real kernel: loaders fault in their slices of one anonymous mapping and drop
/// them with madvise(MADV_DONTNEED); a rate-limited writer thread maps, touches and unmaps small regions.
/// </summary>
/// <remarks>Same task layout as the model: loaders on CPUs 0..N-1, the writer on CPU N, sleeping between operations.</remarks>
public sealed unsafe class NativeDatabaseLoad : Workload
{
    private const int Page = Memory.PhysicalMemory.PageSize;

    private TaskSlot[] _slots = [];
    private TaskSlot[] _writer = new TaskSlot[1];
    private byte* _region;
    private nuint _regionBytes;

    /// <summary>Creates the workload.</summary>
    /// <param name="sliceBytes">Bytes per loader.</param>
    /// <param name="writerOpsPerSecond">Writer operations per second; 0 for no writer.</param>
    /// <param name="writerRegionBytes">Bytes per writer operation.</param>
    public NativeDatabaseLoad(long sliceBytes = DatabaseLoad.DefaultSliceBytes, double writerOpsPerSecond = DatabaseLoad.DefaultWriterOpsPerSecond, long writerRegionBytes = DatabaseLoad.DefaultWriterRegionBytes)
    {
        // The model's constructor validates the same arguments.
        _ = new DatabaseLoad(sliceBytes, writerOpsPerSecond, writerRegionBytes);
        SliceBytes = sliceBytes;
        WriterOpsPerSecond = writerOpsPerSecond;
        WriterRegionBytes = writerRegionBytes;
    }

    /// <summary>Bytes per loader.</summary>
    public long SliceBytes { get; }

    /// <summary>Writer operations per second (0: no writer).</summary>
    public double WriterOpsPerSecond { get; }

    /// <summary>Bytes per writer operation.</summary>
    public long WriterRegionBytes { get; }

    /// <inheritdoc/>
    public override string Name => WriterOpsPerSecond > 0 ? "native-database-load" : "native-database-load-nowriter";

    /// <inheritdoc/>
    public override bool IsNative => true;

    /// <inheritdoc/>
    public override int BackgroundTasks => WriterOpsPerSecond > 0 ? 1 : 0;

    /// <inheritdoc/>
    public override string OperationUnit => "loader faults";

    /// <inheritdoc/>
    public override long MemoryBytes(int threads) => 1L << 20;

    /// <inheritdoc/>
    public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("Native workloads run on Linux only.");
        }

        // Guard pages at both ends, as in the model, keep the writer's mappings out of the loaders' VMA.
        _regionBytes = (nuint)(SliceBytes * threads) + (2 * Page);
        _region = LibC.MapOrThrow(_regionBytes, LibC.MapPrivate | LibC.MapAnonymous, -1);
        LibC.ProtectNoneOrThrow(_region, Page);
        LibC.ProtectNoneOrThrow(_region + _regionBytes - Page, Page);
        _slots = new TaskSlot[threads];
        for (int i = 0; i < threads; i++)
        {
            _slots[i].Handle = (nint)(_region + Page + (SliceBytes * i));
        }

        _writer = new TaskSlot[1];
    }

    /// <inheritdoc/>
    public override long RunOperationBatch(Cpu cpu, int task)
    {
        ref TaskSlot s = ref _slots[task];
        byte* p = (byte*)s.Handle;
        ulong slice = (ulong)SliceBytes;
        ulong end = Math.Min(slice, s.Offset + ((ulong)DatabaseLoad.BatchPages * Page));
        long touched = 0;
        for (ulong off = s.Offset; off < end; off += Page)
        {
            *(ulong*)(p + off) = off;
            touched++;
        }

        s.Offset = end;
        if (end == slice)
        {
            LibC.DontNeedOrThrow(p, (nuint)slice);
            s.Offset = 0;
        }

        return touched;
    }

    /// <inheritdoc/>
    public override long RunBackgroundBatch(Cpu cpu, int index)
    {
        if (!Pacing.Due(ref _writer[0], WriterOpsPerSecond))
        {
            Thread.Sleep(1);
            return 0;
        }

        nuint length = (nuint)WriterRegionBytes;
        byte* a = LibC.MapOrThrow(length, LibC.MapPrivate | LibC.MapAnonymous, -1);
        for (nuint off = 0; off < length; off += Page)
        {
            *(ulong*)(a + off) = off;
        }

        LibC.UnmapOrThrow(a, length);
        _writer[0].Count++;
        return 1;
    }

    /// <inheritdoc/>
    public override void Teardown()
    {
        if (_region != null)
        {
            LibC.UnmapOrThrow(_region, _regionBytes);
            _region = null;
        }

        _slots = [];
    }
}
