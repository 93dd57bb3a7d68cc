using SpecVm.Faults;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Workloads;
using Xunit;
using Xunit.Abstractions;

namespace SpecVm.Tests.Simulation;

public sealed class SimulatorScratchTests(ITestOutputHelper output)
{
    [Fact]
    public void Scratch()
    {
        foreach (double qus in new[] { 0.25, 1, 4, 16 })
        {
            var exp = new ScalingExperiment(new ScalingOptions
            {
                Workloads = [new PageFault1(4L << 20), new DatabaseLoad(2L << 20, 1000)],
                Strategies = [StrategyCatalog.TryCreate("mmap-lock")!, StrategyCatalog.TryCreate("speculative")!],
                ThreadCounts = [32],
                Repeats = 1,
                VirtualTime = new VirtualTimeOptions { Band = false, Quantum = TimeSpan.FromTicks((long)(qus * 10)), Duration = TimeSpan.FromMilliseconds(2), Warmup = TimeSpan.FromMilliseconds(1) },
            });
            ScalingResult r = exp.Run();
            foreach (ScalingPoint p in r.Points)
            {
                output.WriteLine($"Q={qus}us {p.Workload} {p.Strategy} {p.Threads}: {p.OpsPerSecond:N0} ops/s; sim {string.Join(", ", p.Simulation!.Select(kv => $"{kv.Key}={kv.Value:N0}"))}");
            }
        }
    }
}
