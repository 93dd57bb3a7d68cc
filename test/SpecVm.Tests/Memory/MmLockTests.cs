using SpecVm.Faults;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Tests.Memory;

/// <summary>
/// The memory-management locks of issue 17: the LRU lock with its per-CPU folio batches, the zone lock with the per-CPU
/// free lists' batch and high mark, and the memory cgroup's per-CPU stock over a hierarchy of counters.
/// </summary>
public class MmLockTests
{
    private const ulong Page = PhysicalMemory.PageSize;

    private static Machine NewMachine(int cpus = 2, int folioBatch = LruVec.DefaultFolioBatchSize, int pcpBatch = 63, int pcpHigh = 378, int memcgDepth = 0) =>
        new(new MachineOptions
        {
            CpuCount = cpus,
            MemoryBytes = 64L << 20,
            WatchdogTimeout = TimeSpan.FromSeconds(5),
            FolioBatchSize = folioBatch,
            PcpBatch = pcpBatch,
            PcpHigh = pcpHigh,
            MemcgDepth = memcgDepth,
        });

    /// <summary>Faults in <paramref name="pages"/> pages of a new mapping on <paramref name="cpu"/>; returns its address.</summary>
    private static ulong MapAndTouch(AddressSpace mm, Cpu cpu, int pages)
    {
        ulong a = mm.Map(cpu, (ulong)pages * Page, Protection.ReadWrite);
        for (int i = 0; i < pages; i++)
        {
            mm.Write(cpu, a + ((ulong)i * Page), (long)i);
        }

        return a;
    }

    [Theory]
    [InlineData(31, 100)]
    [InlineData(15, 100)]
    [InlineData(15, 45)]
    [InlineData(7, 3)]
    public void TheLruLockIsTakenOncePerFullFolioBatchOfNewPagesAndOncePerBatchOfFreedOnes(int batch, int pages)
    {
        using Machine m = NewMachine(folioBatch: batch);
        var ledger = FrameLedger.Begin(m);
        var mm = new AddressSpace(m, new MmapLockStrategy());
        long addLocks = 0, freeLocks = 0, onListAfterFaults = 0, onListAfterUnmap = -1;
        m.Run(0, cpu =>
        {
            long before = cpu.Read(CpuCounter.LruLockAcquisitions);
            ulong a = MapAndTouch(mm, cpu, pages);
            addLocks = cpu.Read(CpuCounter.LruLockAcquisitions) - before;
            onListAfterFaults = m.Lru.OnList;
            before = cpu.Read(CpuCounter.LruLockAcquisitions);
            mm.Unmap(cpu, a, (ulong)pages * Page);
            freeLocks = cpu.Read(CpuCounter.LruLockAcquisitions) - before;
            onListAfterUnmap = m.Lru.OnList;
        });

        // Adds: one acquisition per full batch; the partial batch waits. The unmap first drains that partial batch
        // (unmap_region's lru_add_drain: one more acquisition if there is one), then frees a batch per acquisition.
        Assert.Equal(pages / batch, addLocks);
        Assert.Equal(pages / batch * batch, onListAfterFaults);
        Assert.Equal((pages % batch != 0 ? 1 : 0) + ((pages + batch - 1) / batch), freeLocks);
        Assert.Equal(0, onListAfterUnmap);
        Assert.Equal(0, m.Counter(CpuCounter.LruLockContentions));
        mm.Dispose();
        ledger.AssertBalanced();
    }

    [Fact]
    public void WithFolioBatchZeroTheLruLockIsNeverTaken()
    {
        using Machine m = NewMachine(folioBatch: 0);
        var ledger = FrameLedger.Begin(m);
        var mm = new AddressSpace(m, new MmapLockStrategy());
        m.RunOnAll(cpu =>
        {
            ulong a = MapAndTouch(mm, cpu, 100);
            mm.Unmap(cpu, a, 50 * Page);
        });
        mm.Dispose();
        Assert.Equal(0, m.Counter(CpuCounter.LruLockAcquisitions));
        Assert.Equal(0, m.Lru.OnList);
        ledger.AssertBalanced();
    }

    [Fact]
    public void PagesLeftInAnAddBatchGoOntoTheListWhenTheWorkEndsAndLeaveItWhenTheAddressSpaceIsDisposed()
    {
        using Machine m = NewMachine(folioBatch: 31);
        var ledger = FrameLedger.Begin(m);
        var mm = new AddressSpace(m, new MmapLockStrategy());
        m.Run(0, cpu => MapAndTouch(mm, cpu, 40));

        // The work item ended: its CPU drained the 9 pages of its partial batch onto the list.
        Assert.Equal(0, m.Lru.PendingAdds(0));
        Assert.Equal(40, m.Lru.OnList);
        mm.Dispose(); // On no CPU: one acquisition per page (no batch to gather them in).
        Assert.Equal(0, m.Lru.OnList);
        ledger.AssertBalanced();
    }

    [Fact]
    public void APageFreedWhileInAnotherCpusAddBatchIsFreedByThatCpuWhenItsBatchDrains()
    {
        using Machine m = NewMachine(folioBatch: 31);
        var ledger = FrameLedger.Begin(m);
        var mm = new AddressSpace(m, new MmapLockStrategy());
        ulong a = 0;
        var faulted = new ManualResetEventSlim(false);
        int release = 0;
        Task owner = m.RunAsync(0, cpu =>
        {
            a = MapAndTouch(mm, cpu, 5);
            faulted.Set();

            // Spin serving IPIs (the unmap below shoots this CPU down) and keep the 5 pages in this CPU's batch.
            while (Volatile.Read(ref release) == 0)
            {
                cpu.Relax();
            }
        });
        Assert.True(faulted.Wait(TimeSpan.FromSeconds(10)));
        Assert.Equal(5, m.Lru.PendingAdds(0));

        long lruLocksBefore = m.Counter(CpuCounter.LruLockAcquisitions);
        m.Run(1, cpu => mm.Unmap(cpu, a, 5 * Page));

        // CPU 1 orphaned the 5 pages (no lock: they were never on the list); they wait, unmapped, for CPU 0's batch.
        Assert.Equal(lruLocksBefore, m.Counter(CpuCounter.LruLockAcquisitions));
        Assert.Equal(5, m.Memory.Census().AwaitingFlush);

        Volatile.Write(ref release, 1);
        owner.GetAwaiter().GetResult();
        Assert.Equal(0, m.Lru.OnList);
        Assert.Equal(0, m.Memory.Census().AwaitingFlush);
        mm.Dispose();
        ledger.AssertBalanced();
    }

    [Theory]
    [InlineData(8, 24, 40)]
    [InlineData(63, 378, 1000)]
    [InlineData(4, 4, 17)]
    public void TheZoneLockIsTakenOncePerPcpBatchAndAgainEachTimeAFreeListReachesItsHigh(int batch, int high, int frames)
    {
        using Machine m = NewMachine(folioBatch: 0, pcpBatch: batch, pcpHigh: high);
        Assert.Equal(batch, m.Frames.PcpBatch);
        Assert.Equal(high, m.Frames.PcpHigh);
        var ledger = FrameLedger.Begin(m);
        long refills = 0, drains = 0;
        m.Run(0, cpu =>
        {
            var held = new long[frames];
            long before = cpu.Read(CpuCounter.ZoneLockAcquisitions);
            for (int i = 0; i < frames; i++)
            {
                held[i] = m.Frames.Allocate(cpu.Id, FrameState.Preparing);
            }

            refills = cpu.Read(CpuCounter.ZoneLockAcquisitions) - before;
            before = cpu.Read(CpuCounter.ZoneLockAcquisitions);
            foreach (long pfn in held)
            {
                m.Frames.Free(cpu.Id, pfn);
            }

            drains = cpu.Read(CpuCounter.ZoneLockAcquisitions) - before;
        });

        // Allocation: an empty list takes a batch under the lock (rmqueue_bulk).
        Assert.Equal((frames + batch - 1) / batch, refills);

        // Freeing: the list starts with what the last refill left over; a list at its high gives a batch back.
        int count = (int)(((frames + batch - 1) / batch * (long)batch) - frames);
        int expectedDrains = 0;
        for (int i = 0; i < frames; i++)
        {
            if (count >= high)
            {
                count -= batch;
                expectedDrains++;
            }

            count++;
        }

        Assert.Equal(expectedDrains, drains);
        Assert.Equal(0, m.Counter(CpuCounter.ZoneLockContentions));
        ledger.AssertBalanced();
    }

    [Fact]
    public void TheMmOptionsAreValidatedBeforeAnythingIsBuilt()
    {
        static void Throws(string name, Action<MachineOptions> set)
        {
            var o = new MachineOptions { CpuCount = 1, MemoryBytes = 16L << 20 };
            set(o);
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Machine(o));
            Assert.Equal(name, e.ParamName);
        }

        Throws(nameof(MachineOptions.FolioBatchSize), o => o.FolioBatchSize = -1);
        Throws(nameof(MachineOptions.PcpBatch), o => o.PcpBatch = 0);
        Throws(nameof(MachineOptions.PcpHigh), o => (o.PcpBatch, o.PcpHigh) = (63, 62));
        Throws(nameof(MachineOptions.MemcgDepth), o => o.MemcgDepth = -1);
        Throws(nameof(MachineOptions.MemcgDepth), o => o.MemcgDepth = MemCgroup.MaxDepth + 1);

        var defaults = new MachineOptions();
        Assert.Equal((31, 63, 378, 0), (defaults.FolioBatchSize, defaults.PcpBatch, defaults.PcpHigh, defaults.MemcgDepth));
    }

    [Fact]
    public void MemcgChargesEveryLevelOncePer64PagesPerCpuAndReadsZeroOnceEverythingIsFreed()
    {
        const int Depth = 3;
        using Machine m = NewMachine(memcgDepth: Depth);
        var ledger = FrameLedger.Begin(m);
        var mm = new AddressSpace(m, new MmapLockStrategy());
        var walks = new long[2];
        var mapped = new ulong[2];
        for (int c = 0; c < 2; c++)
        {
            m.Run(c, cpu =>
            {
                long before = cpu.Read(CpuCounter.MemcgCounterWalks);
                mapped[cpu.Id] = MapAndTouch(mm, cpu, 100);
                walks[cpu.Id] = cpu.Read(CpuCounter.MemcgCounterWalks) - before;
                Assert.Equal(2 * 64 - 100, m.Memcg.StockPages(cpu.Id)); // Two refills of 64 pages; 28 left in stock.
            });

            // The work ended and gave its stock back: each level holds exactly the pages charged so far.
            for (int level = 0; level < Depth; level++)
            {
                Assert.Equal(100L * (c + 1), m.Memcg.Usage(level));
            }
        }

        Assert.Equal([2L, 2L], walks);
        m.Run(0, cpu => mm.Unmap(cpu, mapped[0], 60 * Page));
        for (int level = 0; level < Depth; level++)
        {
            Assert.Equal(140, m.Memcg.Usage(level)); // One uncharge walk for the 60 freed pages, at every level.
        }

        mm.Dispose();
        for (int level = 0; level < Depth; level++)
        {
            Assert.Equal(0, m.Memcg.Usage(level));
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void AMemcgChargePastTheLimitFailsAndLeavesEveryLevelAsItWas()
    {
        using var memcg = new MemCgroup(2, 2, default) { MaxPages = 64 };
        for (int i = 0; i < 64; i++)
        {
            Assert.True(memcg.TryCharge(0));
        }

        Assert.False(memcg.TryCharge(1)); // CPU 1's refill of 64 would pass the limit.
        Assert.Equal(64, memcg.Usage(0));
        Assert.Equal(64, memcg.Usage(1));
        memcg.Uncharge(0, 64);
        Assert.Equal(0, memcg.Usage(0));
        Assert.Equal(0, memcg.Usage(1));
    }

    [Fact]
    public void TwoCpusHammeringAllocateAndFreeThroughEveryMmLockKeepTheBooksBalanced()
    {
        // Small batches and a low high mark so that both CPUs take every lock often; a bounded number of rounds.
        using Machine m = NewMachine(folioBatch: 7, pcpBatch: 4, pcpHigh: 8, memcgDepth: 2);
        var ledger = FrameLedger.Begin(m);
        var mm = new AddressSpace(m, new MmapLockStrategy());
        m.RunOnAll(cpu =>
        {
            for (int round = 0; round < 200; round++)
            {
                int pages = 5 + ((round * 7) % 40);
                ulong a = MapAndTouch(mm, cpu, pages);
                ulong half = (ulong)pages / 2 * Page;
                mm.Unmap(cpu, a, half);
                if (round % 3 != 0)
                {
                    // Only what is still ours: the other CPU may have mapped into the half freed above.
                    mm.Unmap(cpu, a + half, ((ulong)pages * Page) - half);
                }
            }
        });

        Assert.True(m.Counter(CpuCounter.ZoneLockAcquisitions) > 0);
        Assert.True(m.Counter(CpuCounter.LruLockAcquisitions) > 0);
        Assert.True(m.Counter(CpuCounter.MemcgCounterWalks) > 0);
        mm.Dispose();
        Assert.Equal(0, m.Lru.OnList);
        Assert.Equal(0, m.Memcg.Usage(0));
        Assert.Equal(0, m.Memcg.Usage(1));
        ledger.AssertBalanced();
    }
}
