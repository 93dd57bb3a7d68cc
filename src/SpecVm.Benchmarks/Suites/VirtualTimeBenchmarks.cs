using BenchmarkDotNet.Attributes;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Simulation;
using SpecVm.Smp;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// How fast the virtual-time mode simulates: host time per simulated page fault with 1 and 60 simulated CPUs, each
/// faulting its own slice of one anonymous VMA (the database-load shape) under the <c>host</c> cost model and the
/// default quantum. <c>OperationsPerInvoke</c> is the number of simulated faults, so the Mean column is host ns per
/// simulated fault and Ops/s is simulated faults per host second (docs/design.md §8, Speed).
/// </summary>
[OpsPerSecondColumn]
[MinColumn]
[MedianColumn]
[Config(typeof(BenchConfig))]
public class VirtualTimeBenchmarks
{
    /// <summary>Simulated faults per invocation, split evenly over the CPUs.</summary>
    public const int TotalPages = 7680;

    private Machine _machine = null!;
    private AddressSpace _mm = null!;
    private ulong _start;

    /// <summary>Simulated CPUs.</summary>
    [Params(1, 60)]
    public int Cpus { get; set; }

    /// <summary>The fault strategy: every correct one of <see cref="StrategyCatalog"/>, its baseline first.</summary>
    [ParamsSource(nameof(Strategies))]
    public string Strategy { get; set; } = StrategyCatalog.Baseline;

    /// <summary>The catalog's strategies (<see cref="StrategyParams.Names"/>).</summary>
    public static IEnumerable<string> Strategies => StrategyParams.Names;

    private ulong SliceBytes => (ulong)(TotalPages / Cpus) * 4096;

    /// <summary>Builds the machine (not pinned: one CPU runs at a time) and the address space.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _machine = new Machine(new MachineOptions { CpuCount = Cpus, MemoryBytes = ((long)TotalPages * 4096) + (64L << 20), Pin = false, AllowOversubscription = true });
        _mm = new AddressSpace(_machine, StrategyCatalog.Create(Strategy));
        _start = _machine.Run(0, cpu => _mm.Map(cpu, SliceBytes * (ulong)Cpus, Protection.ReadWrite));
    }

    /// <summary>Zaps the region (untimed), so every invocation faults every page again.</summary>
    [IterationSetup]
    public void Reset() => _machine.Run(0, cpu => _mm.DontNeed(cpu, _start, SliceBytes * (ulong)Cpus));

    /// <summary>Frees everything.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _machine.Run(0, cpu => _mm.Unmap(cpu, _start, SliceBytes * (ulong)Cpus));
        _mm.Dispose();
        _machine.Dispose();
    }

    /// <summary>One simulation in which every CPU faults its slice once.</summary>
    [Benchmark(OperationsPerInvoke = TotalPages)]
    public double SimulatedFaults()
    {
        AddressSpace mm = _mm;
        ulong start = _start, slice = SliceBytes;
        using var sim = new Simulator(_machine, CostModel.Preset("host"), Cpus == 64 ? ulong.MaxValue : (1UL << Cpus) - 1, new VirtualTimeOptions().Quantum);
        Task[] tasks = new Task[Cpus];
        for (int i = 0; i < Cpus; i++)
        {
            tasks[i] = _machine.RunAsync(i, cpu => sim.Run(cpu, () =>
            {
                ulong mine = start + (slice * (ulong)cpu.Id);
                for (ulong off = 0; off < slice; off += 4096)
                {
                    mm.TryWrite(cpu, mine + off, 1UL);
                }
            }));
        }

        Task.WaitAll(tasks);
        return sim.Elapsed;
    }
}
