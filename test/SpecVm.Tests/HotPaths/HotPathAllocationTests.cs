using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using Xunit.Abstractions;

namespace SpecVm.Tests.HotPaths;

/// <summary>
/// The allocation gate: the fault, access and IPI paths must not allocate. Measured with the CPU thread's own
/// allocated-bytes counter around thousands of operations after a warm-up (deterministic, unlike timing).
/// </summary>
public class HotPathAllocationTests(ITestOutputHelper output)
{
    private const ulong Region = 8 << 20;

    public static TheoryData<string> Strategies => [.. StrategyCatalog.CorrectNames];

    [Theory]
    [MemberData(nameof(Strategies))]
    public void AnonymousFaultsAndTlbHitsAllocateNothing(string strategy)
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 128L << 20 });
        using var mm = new AddressSpace(machine, Mm.SmokeMmTests.Make(strategy));
        (long faultBytes, long hitBytes, long faults) = machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, Region, Protection.ReadWrite);
            FaultAll(mm, cpu, a);           // warm-up: JIT, per-CPU frame cache, page tables
            mm.DontNeed(cpu, a, Region);

            long f0 = cpu.Read(CpuCounter.Faults);
            long before = GC.GetAllocatedBytesForCurrentThread();
            FaultAll(mm, cpu, a);           // 2048 write faults, zeroing included
            long afterFaults = GC.GetAllocatedBytesForCurrentThread();
            for (int round = 0; round < 4; round++)
            {
                for (ulong off = 0; off < 64 * 4096; off += 4096)
                {
                    mm.TryWrite(cpu, a + off, off);   // TLB hits (64 pages fit the 256-entry TLB)
                    mm.TryRead(cpu, a + off, out ulong _);
                }
            }

            long afterHits = GC.GetAllocatedBytesForCurrentThread();
            long faulted = cpu.Read(CpuCounter.Faults) - f0;
            mm.Unmap(cpu, a, Region);
            return (afterFaults - before, afterHits - afterFaults, faulted);
        });
        output.WriteLine($"{strategy}: {faults} faults allocated {faultBytes} B; TLB-hit accesses allocated {hitBytes} B");
        Assert.Equal(2048, faults);
        Assert.Equal(0, faultBytes);
        Assert.Equal(0, hitBytes);
    }

    [Theory]
    [MemberData(nameof(Strategies))]
    public void HugePageFaultsAllocateNothing(string strategy)
    {
        // Transparent huge pages: each 2 MiB of the region is one huge fault (the speculative strategies abort and fall
        // back), zeroing 512 frames, its deposited table and one LRU entry; MADV_DONTNEED zaps them whole between rounds.
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 64L << 20, HugePageReserve = 8 });
        using var mm = new AddressSpace(machine, Mm.SmokeMmTests.Make(strategy), new AddressSpaceOptions { TransparentHugePages = TransparentHugePageMode.Always });
        (long faultBytes, long faults, long huge) = machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, Region, Protection.ReadWrite);
            FaultAll(mm, cpu, a);           // warm-up: JIT, frame caches, page tables, the gather
            mm.DontNeed(cpu, a, Region);

            long f0 = cpu.Read(CpuCounter.Faults);
            long h0 = cpu.Read(CpuCounter.ThpFaultAlloc);
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int round = 0; round < 4; round++)
            {
                FaultAll(mm, cpu, a);       // 4 huge faults and 2,044 TLB misses that find the huge PMDs
                mm.DontNeed(cpu, a, Region);
            }

            long after = GC.GetAllocatedBytesForCurrentThread();
            long faulted = cpu.Read(CpuCounter.Faults) - f0;
            long hugeFaults = cpu.Read(CpuCounter.ThpFaultAlloc) - h0;
            mm.Unmap(cpu, a, Region);
            return (after - before, faulted, hugeFaults);
        });
        output.WriteLine($"{strategy}: {faults} faults ({huge} huge) and their zaps allocated {faultBytes} B");
        Assert.Equal(16, faults);
        Assert.Equal(16, huge);
        Assert.Equal(0, faultBytes);
    }

    [Fact]
    public void RetiringAVmaAllocatesNothing()
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 16L << 20 });
        var slab = new VmaSlab(machine.Srcu, poison: false);
        var vmas = new Vma[1024];

        // Rounds of 1,024 retires, a grace period after each. The deferred queue's two buffers (swapped per grace
        // period) grow now and then, depending on when the grace-period worker takes a batch: that growth is amortised,
        // so the least any round allocates is what a retire itself costs. A boxed state per retire would make every
        // round allocate 32 B a retire.
        long least = long.MaxValue;
        for (int round = 0; round < 10; round++)
        {
            for (int i = 0; i < vmas.Length; i++)
            {
                vmas[i] = slab.Allocate();
            }

            long before = GC.GetAllocatedBytesForCurrentThread();
            foreach (Vma v in vmas)
            {
                slab.Retire(v);
            }

            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
            machine.Srcu.Barrier();
        }

        output.WriteLine($"{vmas.Length} retires allocated at least {least} B in a round");
        Assert.Equal(0, least);
    }

    [Fact]
    public void ServingShootdownIpisAllocatesNothing()
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 64L << 20 });
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        ulong a = machine.Run(0, cpu => mm.Map(cpu, 1 << 20, Protection.ReadWrite));
        machine.Run(0, cpu => mm.Write(cpu, a, 1UL));
        using var stop = new ManualResetEventSlim();
        long servedBytes = 0;
        long served = 0;
        Task target = machine.RunAsync(1, cpu =>
        {
            mm.Read<ulong>(cpu, a); // load the address space: CPU 1 joins its CPU mask
            long ipis0 = cpu.Read(CpuCounter.IpisServed);
            long before = GC.GetAllocatedBytesForCurrentThread();
            while (!stop.IsSet)
            {
                mm.TryRead(cpu, a, out ulong _); // interrupt point on every access
            }

            servedBytes = GC.GetAllocatedBytesForCurrentThread() - before;
            served = cpu.Read(CpuCounter.IpisServed) - ipis0;
        });
        long sentBytes = machine.Run(0, cpu =>
        {
            mm.Read<ulong>(cpu, a);
            while (!cpu.Machine.Cpu(1).Loaded?.Equals(mm.TlbContext) ?? true)
            {
                Thread.Yield();
            }

            for (int i = 0; i < 200; i++)
            {
                cpu.Shootdown(mm.TlbContext, a, a + 4096); // warm-up
            }

            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 2000; i++)
            {
                cpu.Shootdown(mm.TlbContext, a, a + 4096);
            }

            return GC.GetAllocatedBytesForCurrentThread() - before;
        });
        stop.Set();
        target.Wait();
        output.WriteLine($"2000 shootdowns allocated {sentBytes} B on the initiator; target served {served} IPIs allocating {servedBytes} B");
        Assert.True(served >= 2000, $"target served only {served} IPIs");
        Assert.Equal(0, sentBytes);
        Assert.Equal(0, servedBytes);
        machine.Run(0, cpu => mm.Unmap(cpu, a, 1 << 20));
    }

    private static void FaultAll(AddressSpace mm, Cpu cpu, ulong a)
    {
        for (ulong off = 0; off < Region; off += 4096)
        {
            if (mm.TryWrite(cpu, a + off, off) != AccessResult.Ok)
            {
                throw new InvalidOperationException("write failed");
            }
        }
    }
}

/// <summary>The gate above can fail: the same measurement catches a planted allocation on the fault path.</summary>
public class HotPathAllocationGateCanFailTests
{
    [Fact]
    public void AnAllocatingFaultStrategyIsCaughtByTheSameMeasurement()
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 64L << 20 });
        using var mm = new AddressSpace(machine, new AllocatingStrategy());
        long bytes = machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 1 << 20, Protection.ReadWrite);
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (ulong off = 0; off < 1 << 20; off += 4096)
            {
                mm.TryWrite(cpu, a + off, 1UL);
            }

            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            mm.Unmap(cpu, a, 1 << 20);
            return allocated;
        });
        Assert.True(bytes > 0, "the allocation gate must see the planted allocation");
    }

    /// <summary>A strategy with a planted bug: it boxes a value on every fault.</summary>
    private sealed class AllocatingStrategy : FaultStrategy
    {
        private readonly MmapLockStrategy _inner = new();

        public static object? Sink { get; private set; }

        public override string Name => "allocating";

        public override FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write)
        {
            Sink = new byte[32];
            return _inner.HandleFault(cpu, mm, address, write);
        }
    }
}
