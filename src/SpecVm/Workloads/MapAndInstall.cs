using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Workloads;

/// <summary>
/// The mix that shows the mmap lock and the page-table lock sharing a cache line (<c>scale -w map-and-install
/// --lock-layout shared-line</c>, against the default <c>padded</c>): task 0 maps and unmaps 1 MiB untouched, over and
/// over (mmap1's loop: every operation two mmap write sections and nothing else), while every other task faults one page
/// per 2 MiB of a region of its own, so that each fault installs a PTE table under the mm-wide page-table lock
/// (<c>mm-&gt;page_table_lock</c>, Linux's <c>pmd_install</c>). The two groups share no data, only — with the shared
/// layout — a line.
/// </summary>
/// <remarks>
/// <para>
/// An LKP report traced a 7.2 % mmap2 regression to exactly this false sharing in <c>mm_struct</c>; in the model mmap2
/// alone never takes the page-table lock, so this workload puts the two lock users side by side. Run it under a strategy
/// whose faults do not take the mmap lock (<c>per-vma-lock</c>, <c>speculative</c>) to keep the groups apart; under
/// <c>mmap-lock</c> the faulters contend for the mmap lock itself, which dwarfs the false sharing.
/// </para>
/// <para>
/// One operation is one map-unmap pair (task 0) or one fault (the others). An installer that reaches the end of its
/// region unmaps it (freeing its tables) and maps it again, a round like page-fault1's. With one task there are no
/// installers: the point measures the mapper alone.
/// </para>
/// </remarks>
public sealed class MapAndInstall : Workload
{
    /// <summary>The default region per installing task: 1 GiB, 512 faults (and tables) per round.</summary>
    public const long DefaultRegionBytes = 1L << 30;

    private const ulong TableSpan = 2UL << 20;
    private const ulong MapperBytes = 1UL << 20;
    private const int OpsPerBatch = 4;

    private readonly ulong _regionBytes;
    private AddressSpace? _mm;
    private ulong[] _start = [];
    private ulong[] _next = [];

    /// <summary>Creates the workload.</summary>
    /// <param name="regionBytes">Each installer's region: a multiple of 2 MiB, at least 4 MiB.</param>
    public MapAndInstall(long regionBytes = DefaultRegionBytes)
    {
        if (regionBytes < 2 * (long)TableSpan || regionBytes % (long)TableSpan != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(regionBytes), regionBytes, "The region must be a multiple of 2 MiB, at least 4 MiB.");
        }

        _regionBytes = (ulong)regionBytes;
    }

    /// <inheritdoc/>
    public override string Name => "map-and-install";

    /// <inheritdoc/>
    public override string OperationUnit => "operations (map-unmap pairs and faults)";

    /// <inheritdoc/>
    public override long MemoryBytes(int threads)
    {
        // Each installer's round: a page and a PTE table per 2 MiB, plus the upper levels; the mapper touches nothing.
        long perInstaller = (long)(_regionBytes / TableSpan) * 2 * 4096;
        return (16L << 20) + (Math.Max(0, threads - 1) * (perInstaller + (1L << 20)));
    }

    /// <inheritdoc/>
    public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(strategy);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        var mm = new AddressSpace(machine, strategy, AddressSpaceOptions);
        _mm = mm;
        _start = new ulong[threads];
        _next = new ulong[threads];
        for (int i = 1; i < threads; i++)
        {
            ulong a = machine.Run(0, cpu => MapRegion(mm, cpu));
            _start[i] = a;
            _next[i] = a;
        }
    }

    /// <inheritdoc/>
    public override long RunOperationBatch(Cpu cpu, int task)
    {
        AddressSpace mm = _mm ?? throw new InvalidOperationException("Setup has not run.");
        for (int i = 0; i < OpsPerBatch; i++)
        {
            if (task == 0)
            {
                // Read-only, so it never merges with the installers' read-write regions.
                ulong a = mm.Map(cpu, MapperBytes, Protection.Read);
                mm.Unmap(cpu, a, MapperBytes);
                continue;
            }

            if (_next[task] >= _start[task] + _regionBytes)
            {
                // A new round: the unmap frees the region's tables, so the next round installs them again.
                mm.Unmap(cpu, _start[task], _regionBytes);
                _start[task] = MapRegion(mm, cpu);
                _next[task] = _start[task];
            }

            mm.Write(cpu, _next[task], 1L);
            _next[task] += TableSpan;
        }

        return OpsPerBatch;
    }

    /// <inheritdoc/>
    public override IEnumerable<AddressSpace> AddressSpaces => _mm == null ? [] : [_mm];

    /// <inheritdoc/>
    public override void Teardown()
    {
        _mm?.Dispose();
        _mm = null;
    }

    /// <summary>
    /// Maps a region with a 2 MiB hole on each side (mapped, then unmapped): two installers' regions never touch, so
    /// they never merge into one VMA whose lock and splits all installers would share.
    /// </summary>
    private ulong MapRegion(AddressSpace mm, Cpu cpu)
    {
        ulong a = mm.Map(cpu, _regionBytes + (2 * TableSpan), Protection.ReadWrite);
        mm.Unmap(cpu, a, TableSpan);
        mm.Unmap(cpu, a + TableSpan + _regionBytes, TableSpan);
        return a + TableSpan;
    }
}
