using SpecVm.Faults;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Workloads;
using Xunit;
using Xunit.Abstractions;

namespace SpecVm.Tests.Simulation;

public sealed class QuantumCurveScratch(ITestOutputHelper output)
{
    [Fact]
    public void Curve()
    {
        foreach (double qus in new[] { 2.0 })
        {
            var exp = new ScalingExperiment(new ScalingOptions
            {
                Workloads = [new PageFault1(4L << 20)],
                Strategies = [StrategyCatalog.TryCreate("speculative")!, StrategyCatalog.TryCreate("speculative-refcount")!],
                ThreadCounts = [1, 48],
                Repeats = 1,
                VirtualTime = new VirtualTimeOptions { Band = false, Quantum = TimeSpan.FromTicks((long)(qus * 10)), Duration = TimeSpan.FromMilliseconds(1), Warmup = TimeSpan.FromMilliseconds(0.5) },
            });
            ScalingResult r = exp.Run();
            foreach (ScalingPoint p in r.Points)
            {
                output.WriteLine($"Q={qus}us | {p.Workload} | {p.Strategy} | {p.Threads} | {p.OpsPerSecond:N0} | {p.Simulation!["hostSeconds"]:F1} | {p.Simulation!["simulatedFaultsPerHostSecond"]:N0} | {p.Simulation!["handoffsPerHostSecond"]:N0} faults={p.Counters["Faults"]} zero={p.Counters["PagesZeroed"]} sim={string.Join(",", p.Simulation!.Select(kv => kv.Key + "=" + kv.Value))}");
            }
        }
    }
}
