using SpecVm.Benchmarks.Reports;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Smp;
using SpecVm.Workloads;
using Xunit.Abstractions;

namespace SpecVm.Tests.Simulation;

/// <summary>
/// <see cref="LockLayout.SharedLine"/> costs something the simulator can count: with one CPU taking the mmap lock and
/// others taking the page-table lock, the two locks' line transfers per fault rise when they share a line, and the CPU
/// that takes the mmap lock slows down. Deterministic (virtual time), not a timed test.
/// </summary>
public sealed class LockLayoutSimulationTests(ITestOutputHelper output)
{
    private const string MmapLine = "mmap_lock count";
    private const string PtlLine = "page_table_lock";
    private const string SharedLineLabel = "mmap_lock count + page_table_lock (one line)";

    /// <summary>
    /// Task 0 maps and unmaps 1 MiB untouched (mmap2's loop: the mmap lock's count, nothing else); the other tasks fault
    /// one page per 2 MiB of a region of their own (each fault installs a PTE table under the page-table lock) under
    /// per-VMA locks, so they never take the mmap lock. The two groups share no data: only a line, if the layout says so.
    /// </summary>
    private sealed class MapperAndTableInstallers : Workload
    {
        private const ulong Span = 2UL << 20;
        private const ulong Region = 4UL << 30;
        private AddressSpace? _mm;
        private ulong[] _next = [];
        private ulong[] _end = [];

        public override string Name => "mapper-and-table-installers";

        public override long MemoryBytes(int threads) => (64L << 20) + (threads * (24L << 20));

        public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
        {
            var mm = new AddressSpace(machine, strategy!, AddressSpaceOptions);
            _mm = mm;
            _next = new ulong[threads];
            _end = new ulong[threads];
            for (int i = 1; i < threads; i++)
            {
                ulong a = machine.Run(0, cpu => mm.Map(cpu, Region, Protection.ReadWrite));
                machine.Run(0, cpu => mm.Write(cpu, a, 1L)); // The anon_vma now exists: later faults stay under the VMA lock.
                _next[i] = a + Span;
                _end[i] = a + Region;
            }
        }

        public override long RunOperationBatch(Cpu cpu, int task)
        {
            AddressSpace mm = _mm!;
            for (int i = 0; i < 4; i++)
            {
                if (task == 0)
                {
                    // Read-only, so it never merges with the installers' read-write regions (their VMAs stay untouched).
                    ulong a = mm.Map(cpu, 1UL << 20, Protection.Read);
                    mm.Unmap(cpu, a, 1UL << 20);
                    continue;
                }

                if (_next[task] >= _end[task])
                {
                    throw new InvalidOperationException("The region ran out: lengthen it or shorten the window.");
                }

                mm.Write(cpu, _next[task], 1L);
                _next[task] += Span;
            }

            return 4;
        }

        public override IEnumerable<AddressSpace> AddressSpaces => _mm == null ? [] : [_mm];

        public override void Teardown()
        {
            _mm?.Dispose();
            _mm = null;
        }
    }

    private static ScalingResult Predict(LockLayout layout, int cpus)
    {
        AddressSpaceOptions options = KernelProfile.Default.CreateAddressSpaceOptions();
        options.LockLayout = layout;
        return new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new MapperAndTableInstallers()],
            Strategies = [StrategyCatalog.Create("per-vma-lock")],
            ThreadCounts = [cpus],
            Repeats = 1,
            Verify = true,
            AddressSpaceOptions = options,
            VirtualTime = new VirtualTimeOptions
            {
                Model = CostModel.Preset("epyc-2s-128"),
                Band = false,
                Warmup = TimeSpan.FromMilliseconds(0.2),
                Duration = TimeSpan.FromMilliseconds(0.5),
            },
        }).Run();
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void SharingALineCostsTheTwoLocksTransfersAndSlowsTheMapper(int cpus)
    {
        ScalingResult padded = Predict(LockLayout.Padded, cpus), shared = Predict(LockLayout.SharedLine, cpus);
        ScalingPoint p = Assert.Single(padded.Points), s = Assert.Single(shared.Points);
        Dictionary<string, SharedLineOps> pl = p.LinesPerFault!, sl = s.LinesPerFault!;
        double separate = pl[MmapLine].Transfers + pl[PtlLine].Transfers;
        double together = sl[SharedLineLabel].Transfers;
        output.WriteLine($"{cpus} CPUs: padded {p.OpsPerSecond:N0} ops/s (mapper {p.PerThreadOpsPerSecond[0]:N0}), mmap_lock {Ops(pl[MmapLine])}, page_table_lock {Ops(pl[PtlLine])}; "
            + $"shared-line {s.OpsPerSecond:N0} ops/s (mapper {s.PerThreadOpsPerSecond[0]:N0}), one line {Ops(sl[SharedLineLabel])}");

        // Padded: only the mapper touches the count's line, so its accesses never find it elsewhere.
        Assert.True(pl[MmapLine].Transfers < 0.01, $"The padded count line had {pl[MmapLine].Transfers} transfers per fault.");
        Assert.False(pl.ContainsKey(SharedLineLabel));
        Assert.False(sl.ContainsKey(MmapLine) || sl.ContainsKey(PtlLine), "The shared layout still shows two lines.");

        // Shared: the same accesses (within the run's noise), one line, and the mapper's now miss: at least a fifth of a
        // transfer more per fault than the two separate lines together (measured: +1.5 at 2 CPUs, +0.5 at 4).
        Assert.InRange(sl[SharedLineLabel].Rmws, 0.9 * (pl[MmapLine].Rmws + pl[PtlLine].Rmws), 1.1 * (pl[MmapLine].Rmws + pl[PtlLine].Rmws));
        Assert.True(together > separate + 0.2, $"Shared line: {together:0.000} transfers per fault; separate lines: {separate:0.000}.");

        // And it costs the mapper time: each of its count updates now waits for a transfer.
        Assert.True(s.PerThreadOpsPerSecond[0] < p.PerThreadOpsPerSecond[0], $"The mapper ran {s.PerThreadOpsPerSecond[0]:N0} ops/s on a shared line, {p.PerThreadOpsPerSecond[0]:N0} on its own.");

        // The result says which layout it ran, and the report says so.
        Assert.Equal("padded", padded.Settings.LockLayout);
        Assert.Equal("shared-line", shared.Settings.LockLayout);
        Assert.Contains("lock layout shared-line", MarkdownReport.Build(shared, []), StringComparison.Ordinal);
        Assert.Contains("lock layout padded", MarkdownReport.Build(padded, []), StringComparison.Ordinal);
    }

    private static string Ops(SharedLineOps o) => $"{o.Loads + o.Stores + o.Rmws:0.000} ({o.Transfers:0.000})";
}
