using BenchmarkDotNet.Attributes;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// Fault throughput with several CPUs faulting into one shared address space (each its own slice of one big anonymous
/// VMA, the database-load shape), optionally with a concurrent mapper CPU that keeps mapping, touching and unmapping a
/// small region (about a thousand operations a second, sleeping lazily in between). <c>OperationsPerInvoke</c> is the
/// total number of faults over all threads, so times and the Ops/s column are <b>aggregate throughput</b>.
/// BenchmarkDotNet has no native thread-scaling support (its issue #147); the scaling harness (<c>scale</c>) is the
/// tool for curves — this suite is for quick side-by-side ratios.
/// </summary>
[OpsPerSecondColumn]
[StrategyRatioColumn]
[MinColumn]
[MedianColumn]
[Config(typeof(BenchConfig))]
public class ThreadedFaultBenchmarks
{
    /// <summary>Faults per invocation, split evenly over the threads.</summary>
    /// <remarks>256 MiB: with <c>[IterationSetup]</c> (one invocation per iteration) this keeps an iteration in the
    /// tens of milliseconds; 8192 pages gave 1–5 ms iterations, below BenchmarkDotNet's 100 ms guideline.</remarks>
    public const int TotalPages = 65536;

    private Machine _machine = null!;
    private AddressSpace _mm = null!;
    private ulong _start;
    private volatile bool _stopMapper;
    private Task? _mapper;

    /// <summary>Faulting CPUs: 1 to the cores this process may use.</summary>
    [ParamsSource(nameof(ThreadCounts))]
    public int Threads { get; set; }

    /// <summary>Whether a mapper CPU runs concurrently.</summary>
    [Params(false, true)]
    public bool Mapper { get; set; }

    /// <summary>1..cores.</summary>
    public static IEnumerable<int> ThreadCounts => Enumerable.Range(1, Affinity.AllowedCores.Count);

    private ulong SliceBytes => (ulong)(TotalPages / Threads) * 4096;

    /// <summary>The strategy: every correct one of <see cref="StrategyCatalog"/>, its baseline first.</summary>
    [ParamsSource(nameof(Strategies))]
    public string Strategy { get; set; } = StrategyCatalog.Baseline;

    /// <summary>The catalog's strategies (<see cref="StrategyParams.Names"/>).</summary>
    public static IEnumerable<string> Strategies => StrategyParams.Names;

    /// <summary>Builds the machine and the address space of <see cref="Strategy"/> only.</summary>
    [GlobalSetup]
    public void GlobalSetup() => Setup(StrategyCatalog.Create(Strategy));

    /// <summary>Zaps the region (untimed).</summary>
    [IterationSetup]
    public void Reset() => _machine.Run(0, cpu => _mm.DontNeed(cpu, _start, SliceBytes * (ulong)Threads));

    /// <summary>Frees everything.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _machine.Run(0, cpu => _mm.Unmap(cpu, _start, SliceBytes * (ulong)Threads));
        _mm.Dispose();
        _machine.Dispose();
    }

    /// <summary>Faults with <see cref="Strategy"/> (the "Ratio vs" column compares it with the catalog's baseline).</summary>
    [Benchmark(OperationsPerInvoke = TotalPages)]
    public void Faults() => Fault();

    /// <summary>Builds the machine (threads + 1 CPUs when there is a mapper) and one address space.</summary>
    private void Setup(FaultStrategy strategy)
    {
        _machine = new Machine(new MachineOptions { CpuCount = Threads + (Mapper ? 1 : 0), MemoryBytes = (long)TotalPages * 4096 + (128L << 20) });
        _mm = new AddressSpace(_machine, strategy);
        _start = _machine.Run(0, cpu => _mm.Map(cpu, SliceBytes * (ulong)Threads, Protection.ReadWrite));
    }

    private void Fault()
    {
        AddressSpace mm = _mm;
        ulong start = _start;
        if (Mapper)
        {
            _stopMapper = false;
            _mapper = _machine.RunAsync(Threads, cpu =>
            {
                while (!_stopMapper)
                {
                    ulong a = mm.Map(cpu, 64 << 10, Protection.ReadWrite);
                    for (ulong off = 0; off < 64 << 10; off += 4096)
                    {
                        mm.TryWrite(cpu, a + off, 1UL);
                    }

                    mm.Unmap(cpu, a, 64 << 10);
                    cpu.Sleep(TimeSpan.FromMilliseconds(1));
                }
            });
        }

        ulong slice = SliceBytes;
        _machine.RunOn(Enumerable.Range(0, Threads).ToArray(), cpu =>
        {
            ulong mine = start + (slice * (ulong)cpu.Id);
            for (ulong off = 0; off < slice; off += 4096)
            {
                mm.TryWrite(cpu, mine + off, 1UL);
            }
        });
        if (_mapper != null)
        {
            _stopMapper = true;
            _mapper.GetAwaiter().GetResult();
            _mapper = null;
        }
    }
}
