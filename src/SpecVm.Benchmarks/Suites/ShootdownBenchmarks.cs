using BenchmarkDotNet.Attributes;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// A one-page TLB shootdown from CPU 0 versus the number of target CPUs, each target running a loop of simulated
/// reads of its own page in the same address space (so it is in the CPU mask, awake, and serves flush IPIs at the
/// interrupt point of every access). Baseline: <see cref="Interlocked.MemoryBarrierProcessWide"/> (the runtime's
/// OS-IPI process-wide barrier), so the Ratio column reads "shootdown cost in units of one OS membarrier".
/// </summary>
/// <remarks>
/// <see cref="Targets"/> runs 1..cores-1 (each target on its own core, the benchmark thread beside idle CPU 0), then
/// one oversubscribed point, cores+1 targets: there the target threads share cores with each other and with the
/// initiator, so an IPI can wait for a scheduler time slice — the row shows what oversubscription costs, not the
/// protocol. With 2 cores that is Targets = 1 (honest) and 3 (oversubscribed).
/// </remarks>
[OpsPerSecondColumn]
[Config(typeof(BenchConfig))]
public class ShootdownBenchmarks
{
    private Machine _machine = null!;
    private AddressSpace _mm = null!;
    private Cpu _cpu = null!;
    private CpuAttachment? _attachment;
    private ulong _va;
    private Task? _targets;
    private int _stop;

    /// <summary>Target CPUs: 1..cores-1, then cores+1 (oversubscribed).</summary>
    [ParamsSource(nameof(TargetCounts))]
    public int Targets { get; set; }

    /// <summary>1..cores-1 (at least 1), then cores+1.</summary>
    public static IEnumerable<int> TargetCounts
    {
        get
        {
            int cores = Affinity.AllowedCores.Count;
            return Enumerable.Range(1, Math.Max(1, cores - 1)).Append(cores + 1);
        }
    }

    /// <summary>Builds a machine of 1 + <see cref="Targets"/> pinned CPUs and starts every target's access loop.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _machine = new Machine(new MachineOptions { CpuCount = Targets + 1, MemoryBytes = 64L << 20, Pin = true });
        Affinity.TryPinCurrentThread(Affinity.AllowedCores[0]);
        _mm = new AddressSpace(_machine, new MmapLockStrategy());
        ulong pages = (ulong)Targets + 1;
        _va = _machine.Run(0, cpu =>
        {
            ulong a = _mm.Map(cpu, pages * 4096, Protection.ReadWrite);
            for (ulong i = 0; i < pages; i++)
            {
                _mm.Write(cpu, a + (i * 4096), 1UL);
            }

            return a;
        });
        // This thread runs as CPU 0 from here on (CPU 0's own thread parks): shootdowns are initiated on this thread.
        _attachment = _machine.Attach(0);
        _cpu = _attachment.Cpu;
        int started = 0;
        _targets = Task.WhenAll(Enumerable.Range(1, Targets).Select(id => _machine.RunAsync(id, cpu =>
        {
            ulong mine = _va + ((ulong)id * 4096);
            _mm.TryRead(cpu, mine, out ulong _);
            Interlocked.Increment(ref started);
            while (Volatile.Read(ref _stop) == 0)
            {
                _mm.TryRead(cpu, mine, out ulong _);
            }
        })));
        SpinWait.SpinUntil(() => Volatile.Read(ref started) == Targets);

        // CPU 0's TLB holds the shot-down page, as it would after the access that preceded an munmap.
        _mm.TryRead(_cpu, _va, out ulong _);
    }

    /// <summary>Stops the targets and frees the machine.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        Volatile.Write(ref _stop, 1);
        _targets?.GetAwaiter().GetResult();
        _attachment?.Dispose();
        _mm.Dispose();
        _machine.Dispose();
    }

    /// <summary>Baseline: the runtime's process-wide memory barrier (an OS IPI to every core running the process).</summary>
    [Benchmark(Baseline = true)]
    public void ProcessWideBarrier() => Interlocked.MemoryBarrierProcessWide();

    /// <summary>A one-page shootdown from CPU 0: bump the generation, flush locally, IPI every target, wait for the acks.</summary>
    [Benchmark]
    public void ShootdownOnePage() => _cpu.Shootdown(_mm.TlbContext, _va, _va + 4096);
}
