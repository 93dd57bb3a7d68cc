using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using Xunit.Abstractions;

namespace SpecVm.Tests.Mm;

public class VmaIndexTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void RandomInsertsAndDeletesMatchASortedList(int seed)
    {
        output.WriteLine($"seed {seed}");
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 1 << 20 });
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        var index = new VmaIndex();
        var oracle = new SortedDictionary<ulong, Vma>();
        var rng = new Random(seed);
        for (int step = 0; step < 3000; step++)
        {
            if (oracle.Count > 0 && rng.Next(3) == 0)
            {
                var victims = oracle.Values.Where(_ => rng.Next(4) == 0).Take(3).ToList();
                index.Replace(victims, []);
                foreach (Vma v in victims)
                {
                    oracle.Remove(v.Start);
                }
            }
            else
            {
                ulong start = (ulong)rng.Next(1, 20_000) * 0x10000;
                ulong end = start + ((ulong)rng.Next(1, 16) * 0x1000);
                if (oracle.Values.Any(v => v.Start < end && start < v.End))
                {
                    continue;
                }

                Vma v = mm.Slab.Allocate();
                v.Initialize(mm, start, end, Protection.Read, MappingKind.Anonymous, null, 0);
                index.Replace([], [v]);
                oracle[start] = v;
            }

            if (step % 97 == 0)
            {
                Assert.Equal(oracle.Values, index.SnapshotLive());
            }

            ulong probe = (ulong)rng.Next(0, 20_100) * 0x10000 + (ulong)rng.Next(0, 0x20000);
            Vma? expected = oracle.Values.FirstOrDefault(v => v.Start <= probe && probe < v.End);
            Assert.Same(expected, index.Find(probe));
            ulong probeEnd = probe + (ulong)rng.Next(1, 0x40000);
            Vma? firstOverlap = oracle.Values.FirstOrDefault(v => v.Start < probeEnd && probe < v.End);
            Assert.Same(firstOverlap, index.FirstOverlap(probe, probeEnd));
            var collected = new List<Vma>();
            index.CollectOverlapping(probe, probeEnd, collected);
            Assert.Equal(oracle.Values.Where(v => v.Start < probeEnd && probe < v.End), collected);
        }

        Assert.Equal(oracle.Count, index.Count);
        output.WriteLine($"final count {index.Count}, height {index.Height}");
    }

    [Fact]
    public void HeightGrowsLogarithmically()
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 1 << 20 });
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        var index = new VmaIndex();
        for (int i = 0; i < 10_000; i++)
        {
            Vma v = mm.Slab.Allocate();
            ulong start = 0x100000 + ((ulong)i * 0x2000);
            v.Initialize(mm, start, start + 0x1000, Protection.Read, MappingKind.Anonymous, null, 0);
            index.Replace([], [v]);
        }

        // 10k VMAs, fanout 16, nodes at least half full after splits: height ≤ log8(10k) + 1 ≈ 5.4.
        Assert.InRange(index.Height, 3, 6);
        Assert.Equal(10_000, index.Count);
    }

    [Fact]
    public void OverlappingInsertIsRefused()
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 1 << 20 });
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        var index = new VmaIndex();
        Vma a = mm.Slab.Allocate();
        a.Initialize(mm, 0x10000, 0x20000, Protection.Read, MappingKind.Anonymous, null, 0);
        Vma b = mm.Slab.Allocate();
        b.Initialize(mm, 0x1F000, 0x30000, Protection.Read, MappingKind.Anonymous, null, 0);
        index.Replace([], [a]);
        Assert.Throws<InvalidOperationException>(() => index.Replace([], [b]));
        Assert.Throws<InvalidOperationException>(() => index.Replace([b], []));
        Assert.Equal(1, index.Count);
    }
}
