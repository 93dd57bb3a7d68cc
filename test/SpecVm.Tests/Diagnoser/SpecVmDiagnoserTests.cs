using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using BenchmarkDotNet.Validators;
using SpecVm.Diagnosers;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Tests.Diagnoser;

/// <summary>The BenchmarkDotNet diagnoser: a user's own benchmark gets SpecVm's counters per operation as columns.</summary>
[Collection(Mm.MachineCollection.Name)]
public class SpecVmDiagnoserTests
{
    [Fact]
    public void AUsersBenchmarkShowsTheCountersPerOperation()
    {
        string artifacts = Path.Combine(Path.GetTempPath(), "specvm-diagnoser-" + Guid.NewGuid().ToString("N"));
        try
        {
            IConfig config = ManualConfig.CreateEmpty()
                .AddJob(Job.Dry.WithToolchain(InProcessEmitToolchain.Instance).WithIterationCount(2).WithInvocationCount(1).WithUnrollFactor(1))
                .AddSpecVmDiagnoser()
                .AddLogger(NullLogger.Instance)
                .AddColumnProvider(DefaultColumnProviders.Instance)
                .WithOptions(ConfigOptions.DisableOptimizationsValidator | ConfigOptions.DisableLogFile)
                .WithArtifactsPath(artifacts);
            Summary summary = BenchmarkRunner.Run<FaultProbe>(config);
            Assert.Equal(2, summary.Reports.Length);
            Assert.True(summary.Reports.All(r => r.Success), string.Join('\n', summary.ValidationErrors.Select(e => e.Message)));
            BenchmarkReport report = summary.Reports.Single(r => (string)r.BenchmarkCase.Parameters["Strategy"] == "speculative");
            BenchmarkReport mmseq = summary.Reports.Single(r => (string)r.BenchmarkCase.Parameters["Strategy"] == "speculative-mmseq");

            // Each operation is one anonymous write fault handled speculatively (the very first one falls back: its page
            // tables did not exist yet); the DontNeed that ends each invocation takes the mmap lock for read once.
            double ops = 2 * FaultProbe.Pages;
            var columns = SpecVmDiagnoser.Default.GetColumnProvider().GetColumns(summary).ToList();
            double Metric(CpuCounter c) => double.Parse(columns.Single(col => col.Id == "SpecVm." + c).GetValue(summary, report.BenchmarkCase), System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(1.0, Metric(CpuCounter.Faults), 4);
            Assert.Equal(1.0, Metric(CpuCounter.SpecAttempts), 4);
            Assert.InRange(Metric(CpuCounter.SpecSuccess), ((ops - 1) / ops) - 1e-4, 1.0);
            Assert.InRange(Metric(CpuCounter.MmapReadAcquisitions), (2 / ops) - 1e-4, (3 / ops) + 1e-4);
            Assert.Equal(0.0, Metric(CpuCounter.SpecAbortSeqChanged));

            // A strategy's own registered counters get columns too: the per-mm-sequence path counts its attempts there.
            IColumn attempts = columns.Single(col => col.Id == "SpecVm.Registered.speculative-mmseq/attempt");
            Assert.Equal(1.0, double.Parse(attempts.GetValue(summary, mmseq.BenchmarkCase), System.Globalization.CultureInfo.InvariantCulture), 4);
            Assert.Equal(0.0, double.Parse(attempts.GetValue(summary, report.BenchmarkCase), System.Globalization.CultureInfo.InvariantCulture));

            // Columns with nothing to say are hidden; the others reach the summary table.
            string table = string.Join('|', summary.Table.FullHeader);
            Assert.Contains(nameof(CpuCounter.SpecSuccess), table, StringComparison.Ordinal);
            Assert.DoesNotContain(nameof(CpuCounter.VmaLockSuccess), table, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(artifacts))
            {
                Directory.Delete(artifacts, recursive: true);
            }
        }
    }

    [Fact]
    public void ThePackageReadmeExampleCompilesAsPasted()
    {
        string readme = Path.Combine(Packaging.RepoPaths.Root, "src", "SpecVm.BenchmarkDotNet", "PACKAGE.md");
        IReadOnlyList<string> blocks = Guide.MarkdownCSharp.Blocks(readme);
        Assert.NotEmpty(blocks);
        var compiled = Guide.MarkdownCSharp.Compile(
            blocks,
            typeof(SpecVmDiagnoser).Assembly.Location,
            typeof(BenchmarkAttribute).Assembly.Location,
            typeof(IConfig).Assembly.Location);
        foreach (var program in compiled)
        {
            Assert.True(program.Problems.Count == 0, string.Join("\n", program.Problems));
        }
    }

    [Fact]
    public void OutOfProcessJobsAreRefusedAtValidation()
    {
        IConfig config = ManualConfig.CreateEmpty().AddJob(Job.Dry).AddDiagnoser(SpecVmDiagnoser.Default);
        BenchmarkRunInfo info = BenchmarkConverter.TypeToBenchmarks(typeof(FaultProbe), config);
        var errors = SpecVmDiagnoser.Default.Validate(new ValidationParameters(info.BenchmarksCases, info.Config)).ToList();
        Assert.Equal(info.BenchmarksCases.Length, errors.Count); // One per benchmark case.
        Assert.All(errors, e => Assert.True(e.IsCritical && e.Message.Contains("in process", StringComparison.Ordinal), e.Message));
    }

    [Fact]
    public void ProcessSnapshotKeepsTheCountsOfDisposedMachines()
    {
        CounterSnapshot before = Machine.ProcessSnapshot();
        using (var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 16L << 20 }))
        using (var mm = new AddressSpace(machine, new MmapLockStrategy()))
        {
            machine.Run(0, cpu =>
            {
                ulong a = mm.Map(cpu, 8 * 4096, Protection.ReadWrite);
                for (ulong p = 0; p < 8; p++)
                {
                    mm.Write(cpu, a + (p * 4096), 1L);
                }
            });
        }

        // Other tests' machines may run meanwhile (the collection serialises most, not all): at least our 8 faults.
        Assert.True(Machine.ProcessSnapshot().Minus(before)[CpuCounter.Faults] >= 8);
    }

    /// <summary>A user's benchmark: 64 write faults per invocation, one per operation.</summary>
    public class FaultProbe
    {
        public const int Pages = 64;
        private Machine _machine = null!;
        private AddressSpace _mm = null!;
        private ulong _region;

        [Params("speculative", "speculative-mmseq")]
        public string Strategy { get; set; } = "speculative";

        [GlobalSetup]
        public void Setup()
        {
            _machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 16L << 20 });
            _mm = new AddressSpace(_machine, StrategyCatalog.Create(Strategy));
            _region = _machine.Run(0, cpu => _mm.Map(cpu, Pages * 4096, Protection.ReadWrite));
        }

        [Benchmark(OperationsPerInvoke = Pages)]
        public void FaultIn() => _machine.Run(0, cpu =>
        {
            for (ulong p = 0; p < Pages; p++)
            {
                _mm.Write(cpu, _region + (p * 4096), 1L);
            }

            _mm.DontNeed(cpu, _region, Pages * 4096);
        });

        [GlobalCleanup]
        public void Cleanup()
        {
            _mm.Dispose();
            _machine.Dispose();
        }
    }
}
