using BenchmarkDotNet.Attributes;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// Map + Unmap and Protect on one CPU versus the number of VMAs already in the address space (1k, 10k, 100k). With
/// the path-copying B-tree index, cost should grow no worse than logarithmically in the VMA count.
/// </summary>
[OpsPerSecondColumn]
[Config(typeof(BenchConfig))]
public class MapUnmapBenchmarks
{
    private const int OpsPerInvoke = 64;
    private Machine _machine = null!;
    private AddressSpace _mm = null!;
    private ulong _first;

    /// <summary>VMAs present before the measured operations.</summary>
    [Params(1_000, 10_000, 100_000)]
    public int Vmas { get; set; }

    /// <summary>Maps <see cref="Vmas"/> one-page VMAs with alternating protections (so they do not merge).</summary>
    [GlobalSetup]
    public void Setup()
    {
        _machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 256L << 20 });
        _mm = new AddressSpace(_machine, new MmapLockStrategy());
        _first = _machine.Run(0, cpu =>
        {
            ulong first = 0;
            for (int i = 0; i < Vmas; i++)
            {
                first = _mm.Map(cpu, 4096, (i & 1) == 0 ? Protection.Read : Protection.ReadWrite);
            }

            return first;
        });
    }

    /// <summary>Frees everything.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _mm.Dispose();
        _machine.Dispose();
    }

    /// <summary>Map one anonymous page anywhere, then unmap it (baseline).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = OpsPerInvoke)]
    public void MapUnmap() => _machine.Run(0, cpu =>
    {
        for (int i = 0; i < OpsPerInvoke; i++)
        {
            ulong a = _mm.Map(cpu, 4096, Protection.Execute);
            _mm.Unmap(cpu, a, 4096);
        }
    });

    /// <summary>Protect an existing one-page VMA read-only and back (two replacements of a VMA).</summary>
    [Benchmark(OperationsPerInvoke = OpsPerInvoke)]
    public void ProtectTwice() => _machine.Run(0, cpu =>
    {
        for (int i = 0; i < OpsPerInvoke; i++)
        {
            _mm.Protect(cpu, _first, 4096, Protection.None);
            _mm.Protect(cpu, _first, 4096, Protection.Read);
        }
    });
}
