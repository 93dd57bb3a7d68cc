using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;

namespace SpecVm.Workloads;

/// <summary>
/// The case that motivated speculative faults (LWN 2017: loading a 2 TB in-memory database): loader tasks fault in
/// one large anonymous region while a writer keeps changing the address space.
/// </summary>
/// <remarks>
/// <para>
/// <b>Loaders.</b> The measured tasks, one per CPU 0..N-1. The region is one anonymous VMA of
/// <c>N × SliceBytes</c> (each slice starting on a 2 MiB boundary) mapped at setup, between two PROT_NONE guard pages that keep the writer's mappings from merging
/// into it; loader i owns slice i and writes one word per page of it. A loader that has
/// faulted its whole slice in drops it with <see cref="AddressSpace.DontNeed"/> (madvise, mmap lock for read) and starts
/// again, so every touch is a fault. One operation is one page faulted in.
/// </para>
/// <para>
/// <b>Writer.</b> One background task on an extra CPU (CPU N). Every <see cref="WriterOpsPerSecond"/>-th of a second
/// it maps <see cref="WriterRegionBytes"/> of anonymous memory, touches every page and unmaps it: two mmap-lock write
/// sections and a TLB shootdown per operation. Between operations it sleeps, marking its CPU lazy as a blocked kernel
/// thread would, so it costs the loaders little CPU time even though, when N equals the core count, its CPU thread
/// shares a core with loader 0 (the machine pins CPU i to core i mod cores). A rate of 0 disables the writer.
/// </para>
/// <para>
/// <b>Interleaved writer</b> (<c>database-load-interleaved</c>). The same writer operations at the same rate, run by
/// loader 0 between its batches instead of on an extra CPU. With N loaders on exactly N cores no CPU thread then shares
/// a core, so a shootdown never waits for a CPU whose thread the host has descheduled; loader 0 spends the writer's
/// time instead of faulting.
/// </para>
/// <para>
/// Metrics: loader faults/s (the throughput), writer operations/s (background throughput) and
/// <c>mmapWriteHeldShare</c>, the share of the window during which the mmap lock was held for write.
/// </para>
/// </remarks>
public sealed class DatabaseLoad : Workload
{
    /// <summary>Default bytes per loader: 128 MiB (about 20–50 ms of faults before each madvise on a 2020s core).</summary>
    public const long DefaultSliceBytes = 128L << 20;

    /// <summary>Default writer rate: 1000 map-touch-unmap operations per second.</summary>
    public const double DefaultWriterOpsPerSecond = 1000;

    /// <summary>Default writer region: 64 KiB (16 pages).</summary>
    public const long DefaultWriterRegionBytes = 64L << 10;

    /// <summary>Pages a loader touches per batch.</summary>
    public const int BatchPages = 256;

    private const ulong Page = Memory.PhysicalMemory.PageSize;

    private AddressSpace? _mm;
    private TaskSlot[] _slots = [];
    private TaskSlot[] _writer = new TaskSlot[1];
    private ulong _region;
    private long _writeHoldAtStart;
    private long _writerOpsAtStart;

    /// <summary>Creates the workload.</summary>
    /// <param name="sliceBytes">Bytes each loader faults in before it drops them and starts again.</param>
    /// <param name="writerOpsPerSecond">Writer operations per second; 0 for no writer.</param>
    /// <param name="writerRegionBytes">Bytes the writer maps, touches and unmaps per operation.</param>
    /// <param name="interleaveWriter">
    /// Run the writer's operations on loader 0's CPU, between its batches, instead of on an extra CPU: N CPUs for N
    /// loaders, so on a machine with exactly N cores no CPU thread shares a core (see the class remarks).
    /// </param>
    public DatabaseLoad(long sliceBytes = DefaultSliceBytes, double writerOpsPerSecond = DefaultWriterOpsPerSecond, long writerRegionBytes = DefaultWriterRegionBytes, bool interleaveWriter = false)
    {
        InterleaveWriter = interleaveWriter && writerOpsPerSecond > 0;
        if (sliceBytes <= 0 || sliceBytes % (long)Page != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(sliceBytes), sliceBytes, "The slice size must be a positive multiple of 4096 bytes.");
        }

        if (writerRegionBytes <= 0 || writerRegionBytes % (long)Page != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(writerRegionBytes), writerRegionBytes, "The writer region must be a positive multiple of 4096 bytes.");
        }

        if (!(writerOpsPerSecond >= 0) || double.IsInfinity(writerOpsPerSecond))
        {
            throw new ArgumentOutOfRangeException(nameof(writerOpsPerSecond), writerOpsPerSecond, "The writer rate must be zero or a positive finite number.");
        }

        SliceBytes = sliceBytes;
        WriterOpsPerSecond = writerOpsPerSecond;
        WriterRegionBytes = writerRegionBytes;
    }

    /// <summary>True when the writer's operations run on loader 0's CPU between its batches (no extra CPU).</summary>
    public bool InterleaveWriter { get; }

    /// <summary>Bytes per loader.</summary>
    public long SliceBytes { get; }

    /// <summary>Writer operations per second (0: no writer).</summary>
    public double WriterOpsPerSecond { get; }

    /// <summary>Bytes per writer operation.</summary>
    public long WriterRegionBytes { get; }

    /// <inheritdoc/>
    public override string Name => WriterOpsPerSecond <= 0 ? "database-load-nowriter" : InterleaveWriter ? "database-load-interleaved" : "database-load";

    /// <inheritdoc/>
    public override int BackgroundTasks => WriterOpsPerSecond > 0 && !InterleaveWriter ? 1 : 0;

    /// <inheritdoc/>
    public override string OperationUnit => "loader faults";

    /// <inheritdoc/>
    public override long MemoryBytes(int threads) => (threads * SliceBytes * 5 / 4) + (4 * WriterRegionBytes) + (64L << 20);

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);

    /// <inheritdoc/>
    public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(strategy);
        var mm = new AddressSpace(machine, strategy, AddressSpaceOptions);
        _mm = mm;
        // Each slice starts on a 2 MiB boundary, as Linux places large anonymous mappings (THP alignment): slices then
        // never share a PTE table, and so never a PTL, which a 4 KiB offset would make neighbours do.
        ulong stride = AlignUp((ulong)SliceBytes, PageTable.PteTableSpan);
        ulong regionLength = stride * (ulong)threads;
        ulong total = regionLength + (2 * PageTable.PteTableSpan);
        _region = machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, total, Protection.ReadWrite);
            ulong region = AlignUp(a + Page, PageTable.PteTableSpan);
            ulong keepStart = region - Page;
            ulong keepEnd = region + regionLength + Page;
            if (keepStart > a)
            {
                mm.Unmap(cpu, a, keepStart - a);
            }

            if (a + total > keepEnd)
            {
                mm.Unmap(cpu, keepEnd, a + total - keepEnd);
            }

            // Guard pages (PROT_NONE) at both ends: without them the writer's small mappings, placed next to the region,
            // would merge into the loaders' VMA (vma_merge) and every writer operation would change the loaders' VMA.
            mm.Protect(cpu, keepStart, Page, Protection.None);
            mm.Protect(cpu, region + regionLength, Page, Protection.None);
            return region;
        });
        _slots = new TaskSlot[threads];
        for (int i = 0; i < threads; i++)
        {
            _slots[i].Base = _region + (stride * (ulong)i);
        }

        _writer = new TaskSlot[1];
    }

    /// <inheritdoc/>
    public override long RunOperationBatch(Cpu cpu, int task)
    {
        AddressSpace mm = _mm!;
        ref TaskSlot s = ref _slots[task];
        ulong slice = (ulong)SliceBytes;
        ulong end = Math.Min(slice, s.Offset + (BatchPages * Page));
        long touched = 0;
        for (ulong off = s.Offset; off < end; off += Page)
        {
            mm.Write(cpu, s.Base + off, off);
            touched++;
        }

        s.Offset = end;
        if (end == slice)
        {
            mm.DontNeed(cpu, s.Base, slice);
            s.Offset = 0;
        }

        if (InterleaveWriter && task == 0 && Pacing.Due(ref _writer[0], WriterOpsPerSecond))
        {
            WriterOperation(cpu, mm);
        }

        return touched;
    }

    /// <inheritdoc/>
    public override long RunBackgroundBatch(Cpu cpu, int index)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        AddressSpace mm = _mm!;
        if (!Pacing.Due(ref _writer[0], WriterOpsPerSecond))
        {
            // Ahead of schedule: sleep as a blocked kernel thread does, lazy, so shootdowns skip this CPU.
            cpu.Sleep(TimeSpan.FromMilliseconds(1));
            return 0;
        }

        WriterOperation(cpu, mm);
        return 1;
    }

    /// <summary>One writer operation: map a small region, touch every page, unmap it (two mmap-lock write sections).</summary>
    private void WriterOperation(Cpu cpu, AddressSpace mm)
    {
        ulong length = (ulong)WriterRegionBytes;
        ulong a = mm.Map(cpu, length, Protection.ReadWrite);
        for (ulong off = 0; off < length; off += Page)
        {
            mm.Write(cpu, a + off, off);
        }

        mm.Unmap(cpu, a, length);
        _writer[0].Count++;
    }

    /// <inheritdoc/>
    public override void BeginMeasurement()
    {
        _writeHoldAtStart = _mm?.MmapLock.WriteHoldTicks ?? 0;
        _writerOpsAtStart = _writer[0].Count;
    }

    /// <inheritdoc/>
    public override void EndMeasurement(double seconds, IDictionary<string, double> metrics)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        if (_mm != null && seconds > 0)
        {
            double held = (_mm.MmapLock.WriteHoldTicks - _writeHoldAtStart) / (double)Stopwatch.Frequency;
            metrics["mmapWriteHeldShare"] = held / seconds;
            if (InterleaveWriter)
            {
                metrics["writerOpsPerSecond"] = (_writer[0].Count - _writerOpsAtStart) / seconds;
            }
        }
    }

    /// <inheritdoc/>
    public override IEnumerable<AddressSpace> AddressSpaces => _mm == null ? [] : [_mm];

    /// <inheritdoc/>
    public override void Teardown()
    {
        _mm?.Dispose();
        _mm = null;
        _slots = [];
    }
}
