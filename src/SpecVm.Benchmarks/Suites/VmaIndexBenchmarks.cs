using BenchmarkDotNet.Attributes;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// VMA index lookup and update versus the number of VMAs (1k, 10k, 100k). The index is a path-copying B-tree: lookups
/// should stay flat-ish (O(log n), allocation-free) and an update (insert + remove of one VMA, published as two new
/// roots) should grow no worse than logarithmically — a copy-on-write sorted array would grow linearly.
/// </summary>
[Config(typeof(BenchConfig))]
public class VmaIndexBenchmarks
{
    private Machine? _machine;
    private AddressSpace? _mm;
    private VmaIndex? _index;
    private Vma? _extra;
    private ulong[] _probes = [];
    private int _next;

    /// <summary>VMAs in the index.</summary>
    [Params(1_000, 10_000, 100_000)]
    public int Vmas { get; set; }

    /// <summary>Builds an index of <see cref="Vmas"/> one-page VMAs with one-page gaps.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 1 << 20, Pin = false });
        _mm = new AddressSpace(_machine, new MmapLockStrategy());
        _index = new VmaIndex();
        var all = new List<Vma>(Vmas);
        for (int i = 0; i < Vmas; i++)
        {
            Vma v = _mm.Slab.Allocate();
            ulong start = 0x100000 + ((ulong)i * 0x2000);
            v.Initialize(_mm, start, start + 0x1000, Protection.Read, MappingKind.Anonymous, null, 0);
            all.Add(v);
        }

        _index.Replace([], all);
        _extra = _mm.Slab.Allocate();
        ulong hole = 0x100000 + ((ulong)(Vmas / 2) * 0x2000) + 0x1000;
        _extra.Initialize(_mm, hole, hole + 0x1000, Protection.Read, MappingKind.Anonymous, null, 0);
        var rng = new Random(42);
        _probes = new ulong[1024];
        for (int i = 0; i < _probes.Length; i++)
        {
            _probes[i] = 0x100000 + ((ulong)rng.Next(Vmas) * 0x2000) + 0x10;
        }
    }

    /// <summary>Frees the machine.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _mm?.Dispose();
        _machine?.Dispose();
    }

    /// <summary>One lockless lookup of a random address (the fault path's VMA lookup).</summary>
    [Benchmark(Baseline = true)]
    public Vma? Lookup() => _index!.Find(_probes[_next++ & 1023]);

    /// <summary>Insert one VMA into a hole and remove it again: two path-copying updates, two publications.</summary>
    [Benchmark]
    public void InsertAndRemove()
    {
        _index!.Replace([], [_extra!]);
        _index.Replace([_extra!], []);
    }
}
