using SpecVm.Faults;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;
using SpecVm.Tests.Mm;

namespace SpecVm.Tests.Misuse;

/// <summary>
/// Issue 15's misuse list, one regression test per item (the numbers are the issue's): each misuse gets a clear
/// exception before anything changes, or works; never a hang (every wait here is bounded), a crash (the cases that
/// crashed the process run in a child process, see <see cref="ChildProcessTests"/>), or another caller's memory.
/// </summary>
[Collection(MachineCollection.Name)]
public class MisuseTests
{
    private const ulong Page = 4096;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    public static TheoryData<string> Strategies => [.. TestMachines.StrategyNames];

    /// <summary>Item 1: a CPU thread leaves for good lazy, so a shootdown running meanwhile stops waiting for it.</summary>
    [Fact]
    public void DisposingTheMachineWhileACpuShootsDownDoesNotHang()
    {
        for (int round = 0; round < 10; round++)
        {
            var machine = TestMachines.Create(2, 16);
            var mm = new AddressSpace(machine, new MmapLockStrategy());
            ulong a = machine.Run(0, cpu => mm.Map(cpu, Page, Protection.ReadWrite));
            machine.Run(1, cpu => mm.Write(cpu, a, 1UL)); // CPU 1 has the address space loaded.
            var stop = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
            Task shooting = machine.RunAsync(0, cpu =>
            {
                while (!stop.IsCancellationRequested)
                {
                    cpu.Shootdown(mm.TlbContext, a, a + Page);
                }
            });
            Task dispose = Task.Run(machine.Dispose);
            Assert.True(dispose.Wait(Bound), $"Round {round}: Machine.Dispose hung while CPU 0 was shooting down.");
            Assert.True(shooting.IsCompleted);
            Assert.All(machine.Cpus, c => Assert.True(c.IsLazy, $"CPU {c.Id} left without going lazy."));
            mm.Dispose(); // After the machine: a no-op, not a crash.
        }
    }

    /// <summary>Item 3: munmap, mprotect, madvise and mmap with interrupts disabled throw before changing anything.</summary>
    [Theory]
    [InlineData("unmap")]
    [InlineData("protect")]
    [InlineData("dontneed")]
    [InlineData("map")]
    public void SystemCallsWithInterruptsDisabledThrowBeforeChangingAnything(string call)
    {
        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        ulong a = machine.Run(0, cpu =>
        {
            ulong at = mm.Map(cpu, 4 * Page, Protection.ReadWrite);
            for (ulong p = 0; p < 4; p++)
            {
                mm.Write(cpu, at + (p * Page), 0x1000UL + p);
            }

            return at;
        });
        machine.Run(1, cpu => Assert.Equal(0x1000UL, mm.Read<ulong>(cpu, a))); // CPU 1 caches a translation.
        string before = string.Join(", ", mm.Vmas.Snapshot());
        machine.Run(0, cpu =>
        {
            cpu.LocalIrqDisable();
            try
            {
                Action act = call switch
                {
                    "unmap" => () => mm.Unmap(cpu, a, 4 * Page),
                    "protect" => () => mm.Protect(cpu, a, 4 * Page, Protection.Read),
                    "dontneed" => () => mm.DontNeed(cpu, a, 4 * Page),
                    _ => () => mm.Map(cpu, Page, Protection.Read),
                };
                var e = Assert.Throws<InvalidOperationException>(act);
                Assert.Contains("interrupts disabled", e.Message);
            }
            finally
            {
                cpu.LocalIrqEnable();
            }
        });
        Assert.Equal(before, string.Join(", ", mm.Vmas.Snapshot()));
        Assert.Equal(0, machine.Memory.Census().AwaitingFlush);
        machine.Run(1, cpu =>
        {
            // Still writable and still holding the data: nothing was zapped or narrowed.
            Assert.Equal(AccessResult.Ok, mm.TryWrite(cpu, a + Page, 0x2001UL));
            Assert.Equal(0x1000UL + 3, mm.Read<ulong>(cpu, a + (3 * Page)));
        });
        TestMachines.AssertNoViolations(mm);
    }

    /// <summary>Item 4: a length that would wrap the address space is refused, naming the parameter.</summary>
    [Fact]
    public void MapWithALengthThatWrapsTheAddressSpaceIsRefused()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        using var file = new SimFile(machine, 4 * (long)Page);
        machine.Run(0, cpu =>
        {
            foreach (ulong length in new[] { ulong.MaxValue - Page + 1, 1UL << 63, PageTable.UserTop })
            {
                var e = Assert.Throws<ArgumentOutOfRangeException>(() => mm.Map(cpu, length, Protection.Read));
                Assert.Equal("length", e.ParamName);
                e = Assert.Throws<ArgumentOutOfRangeException>(() => mm.Map(cpu, length, Protection.Read, MappingKind.PrivateFile, file));
                Assert.Equal("length", e.ParamName);
            }

            var f = Assert.Throws<ArgumentOutOfRangeException>(() => mm.Map(cpu, 2 * Page, Protection.Read, fixedAddress: ulong.MaxValue - Page + 1));
            Assert.Equal("fixedAddress", f.ParamName);
        });
        Assert.Equal(0, mm.Vmas.Count);
        Assert.Equal(0, file.Mappings);
    }

    /// <summary>Item 5: after Dispose, every access throws, TLB hits included, and nobody else's memory is read or written.</summary>
    [Theory]
    [MemberData(nameof(Strategies))]
    public void AccessesAfterDisposeThrowAndTouchNoOtherMapping(string strategy)
    {
        using Machine machine = TestMachines.Create(2, 16);
        var first = new AddressSpace(machine, TestMachines.Strategy(strategy));
        ulong a = machine.Run(0, cpu =>
        {
            ulong at = first.Map(cpu, 8 * Page, Protection.ReadWrite);
            for (ulong p = 0; p < 8; p++)
            {
                first.Write(cpu, at + (p * Page), 0xAAAAUL);
            }

            return at; // CPU 0's TLB now holds every page.
        });
        first.Dispose();
        using var second = new AddressSpace(machine, TestMachines.Strategy(strategy));
        ulong b = machine.Run(1, cpu =>
        {
            ulong at = second.Map(cpu, 8 * Page, Protection.ReadWrite);
            for (ulong p = 0; p < 8; p++)
            {
                second.Write(cpu, at + (p * Page), 0xBBBBUL); // Reuses the frames the first one freed.
            }

            return at;
        });
        machine.Run(0, cpu =>
        {
            for (ulong p = 0; p < 8; p++)
            {
                Assert.Throws<ObjectDisposedException>(() => first.TryRead(cpu, a + (p * Page), out ulong _));
                Assert.Throws<ObjectDisposedException>(() => first.TryWrite(cpu, a + (p * Page), 0xDEADUL));
            }

            Assert.Throws<ObjectDisposedException>(() => first.Map(cpu, Page, Protection.Read));
        });
        machine.Run(1, cpu =>
        {
            for (ulong p = 0; p < 8; p++)
            {
                Assert.Equal(0xBBBBUL, second.Read<ulong>(cpu, b + (p * Page)));
            }
        });
        TestMachines.AssertNoViolations(second);
    }

    /// <summary>Item 5, the other order: CPUs still running in the address space are stopped, not run over.</summary>
    [Fact]
    public void DisposeWhileAnotherCpuAccessesStopsItWithObjectDisposed()
    {
        using Machine machine = TestMachines.Create(2, 16);
        var mm = new AddressSpace(machine, new SpeculativeStrategy());
        ulong a = machine.Run(0, cpu => mm.Map(cpu, 64 * Page, Protection.ReadWrite));
        int started = 0;
        Task loop = machine.RunAsync(1, cpu =>
        {
            for (ulong i = 0; ; i++)
            {
                mm.Write(cpu, a + ((i % 64) * Page), i);
                Volatile.Write(ref started, 1);
            }
        });
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref started) != 0, Bound));
        Assert.True(Task.Run(mm.Dispose).Wait(Bound), "Dispose hung while CPU 1 was accessing.");
        var e = Assert.Throws<AggregateException>(() => loop.Wait(Bound));
        var cpuError = Assert.IsType<CpuException>(e.InnerException);
        Assert.IsType<ObjectDisposedException>(cpuError.InnerException);
        machine.Srcu.Barrier();
        Assert.Equal(0, machine.Memory.Census().Anonymous);
    }

    /// <summary>
    /// The access path's thread check compares a local's address with the stack range bound to the CPU: another CPU's
    /// thread (a stack of its own, bound to its own CPU), and a thread whose attachment ended, are refused all the same.
    /// </summary>
    [Fact]
    public unsafe void TheStackRangeCheckRefusesOtherCpusThreadsAndEndedAttachments()
    {
        byte local = 0;
        if (SpecVm.Smp.ThreadStack.TryGetCurrent(out nuint low, out nuint size))
        {
            Assert.InRange((nuint)(&local) - low, 0u, size - 1); // The range holds this frame.
        }

        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        ulong a = machine.Run(0, cpu =>
        {
            ulong at = mm.Map(cpu, Page, Protection.ReadWrite);
            mm.Write(cpu, at, 7UL);
            return at;
        });
        Cpu cpu0 = machine.Cpu(0);

        // CPU 1's own thread is a CPU, and CPU 0's TLB holds the page: still refused with CPU 0.
        machine.Run(1, _ => Assert.Throws<InvalidOperationException>(() => mm.TryRead(cpu0, a, out ulong _)));

        // This thread was CPU 0 while attached; once detached its stack no longer vouches for it.
        using (CpuAttachment attached = machine.Attach(0))
        {
            Assert.Equal(AccessResult.Ok, mm.TryWrite(attached.Cpu, a, 8UL));
        }

        Assert.Throws<InvalidOperationException>(() => mm.TryWrite(cpu0, a, 9UL));
        machine.Run(0, cpu => Assert.Equal(8UL, mm.Read<ulong>(cpu, a)));
        TestMachines.AssertNoViolations(mm);
    }

    /// <summary>Item 6: accesses and system calls from a thread that is not the CPU, or with another machine's CPU, are refused.</summary>
    [Fact]
    public void OnlyTheCpusOwnThreadOfTheSameMachineMayUseIt()
    {
        using Machine machine = TestMachines.Create(2, 16);
        using Machine other = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        ulong a = machine.Run(0, cpu =>
        {
            ulong at = mm.Map(cpu, Page, Protection.ReadWrite);
            mm.Write(cpu, at, 7UL);
            return at;
        });

        // This test's thread is no CPU: refused even though CPU 0's TLB holds the page (the Release build checks too).
        Cpu cpu0 = machine.Cpu(0);
        Assert.Throws<InvalidOperationException>(() => mm.TryRead(cpu0, a, out ulong _));
        Assert.Throws<InvalidOperationException>(() => mm.TryWrite(cpu0, a, 8UL));
        Assert.Throws<InvalidOperationException>(() => mm.Map(cpu0, Page, Protection.Read));

        // Another machine's CPU, on its own thread: its TLB is not kept coherent by this machine's shootdowns.
        other.Run(0, foreign =>
        {
            var e = Assert.Throws<ArgumentException>(() => mm.TryRead(foreign, a, out ulong _));
            Assert.Equal("cpu", e.ParamName);
            e = Assert.Throws<ArgumentException>(() => mm.Unmap(foreign, a, Page));
            Assert.Equal("cpu", e.ParamName);
        });

        // The supported way to use a CPU from another thread: attach it.
        using (CpuAttachment attached = machine.Attach(0))
        {
            Assert.True(attached.Cpu.IsCurrentThread);
            Assert.Equal(7UL, mm.Read<ulong>(attached.Cpu, a));
        }

        Assert.False(cpu0.IsCurrentThread);
        machine.Run(0, cpu => Assert.Equal(7UL, mm.Read<ulong>(cpu, a))); // CPU 0's own thread has it back.
        TestMachines.AssertNoViolations(mm);
    }

    /// <summary>Attach's own rules: not from a CPU, not twice, no machine disposal while attached, no Run to itself.</summary>
    [Fact]
    public void AttachRefusesWhatWouldDeadlock()
    {
        using Machine machine = TestMachines.Create(2, 16);
        var inner = Assert.Throws<CpuException>(() => machine.Run(1, _ => machine.Attach(0).Dispose()));
        Assert.IsType<InvalidOperationException>(inner.InnerException);
        using (CpuAttachment attached = machine.Attach(0))
        {
            Assert.Throws<InvalidOperationException>(() => machine.Attach(1));
            Assert.Throws<InvalidOperationException>(machine.Dispose);
            Assert.Throws<InvalidOperationException>(() => machine.Run(0, _ => { }));
            Assert.Equal(1, machine.Run(1, c => c.Id)); // Another CPU still takes work; this thread waits lazy.
        }

        Assert.Equal(0, machine.Run(0, c => c.Id));
    }

    /// <summary>Item 7: nested Run that would wait in a cycle throws; a CPU waiting in Run does not stall shootdowns.</summary>
    [Fact]
    public void NestedRunNeverDeadlocks()
    {
        using Machine machine = TestMachines.Create(2, 16);
        Task cycle = Task.Run(() => machine.Run(0, _ => machine.Run(1, _ => machine.Run(0, _ => { }))));
        Assert.True(((IAsyncResult)cycle).AsyncWaitHandle.WaitOne(Bound), "A Run cycle (0 -> 1 -> 0) hung.");
        Exception e = cycle.Exception!.InnerException!;
        while (e is CpuException ce)
        {
            e = ce.InnerException!;
        }

        Assert.IsType<InvalidOperationException>(e);
        Assert.Contains("deadlock", e.Message);

        // CPU 0 has the address space loaded and waits in Run for CPU 1, whose munmap shoots CPU 0 down.
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        Task unmap = Task.Run(() => machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, Page, Protection.ReadWrite);
            mm.Write(cpu, a, 1UL);
            machine.Run(1, c1 =>
            {
                mm.Write(c1, a, 2UL);
                mm.Unmap(c1, a, Page);
            });
            Assert.Equal(AccessResult.SegmentationFault, mm.TryRead(cpu, a, out ulong _)); // Flushed on wake.
        }));
        Assert.True(unmap.Wait(Bound), "An unmap on CPU 1 hung waiting for CPU 0, which waited in Run.");
        TestMachines.AssertNoViolations(mm);
    }

    /// <summary>Item 8: Machine.Dispose on one of its CPUs throws instead of joining itself; the machine stays usable.</summary>
    [Fact]
    public void MachineDisposeOnItsOwnCpuThrows()
    {
        using Machine machine = TestMachines.Create(2, 16);
        Task t = Task.Run(() => machine.Run(1, _ => machine.Dispose()));
        Assert.True(((IAsyncResult)t).AsyncWaitHandle.WaitOne(Bound), "Machine.Dispose on a CPU hung.");
        var e = Assert.IsType<CpuException>(t.Exception!.InnerException);
        Assert.IsType<InvalidOperationException>(e.InnerException);
        Assert.Equal(1, machine.Run(1, c => c.Id));
    }

    /// <summary>Item 9: everything but Dispose throws ObjectDisposedException after the machine's disposal.</summary>
    [Fact]
    public void UseAfterMachineDisposeThrowsObjectDisposed()
    {
        var machine = TestMachines.Create(1, 16);
        var mm = new AddressSpace(machine, new MmapLockStrategy());
        var file = new SimFile(machine, 4 * (long)Page);
        machine.Run(0, cpu => mm.Write(cpu, mm.Map(cpu, Page, Protection.ReadWrite, MappingKind.SharedFile, file), 1UL));
        Cpu cpu0 = machine.Cpu(0);
        machine.Dispose();
        machine.Dispose(); // Twice is fine.
        Assert.Throws<ObjectDisposedException>(() => new AddressSpace(machine, new MmapLockStrategy()));
        Assert.Throws<ObjectDisposedException>(() => new SimFile(machine, (long)Page));
        Assert.Throws<ObjectDisposedException>(() => machine.Memory.Census());
        Assert.Throws<ObjectDisposedException>(() => machine.Counter(CpuCounter.Faults));
        Assert.Throws<ObjectDisposedException>(() => machine.Snapshot());
        Assert.Throws<ObjectDisposedException>(() => cpu0.Read(CpuCounter.Faults));
        Assert.Throws<ObjectDisposedException>(() => machine.Run(0, _ => { }));
        Assert.Throws<ObjectDisposedException>(() => machine.Attach(0));
        Assert.Throws<ObjectDisposedException>(() => file.Read(0, new byte[8]));
        mm.Dispose(); // The order machine, then address space, then file is allowed: no-ops.
        file.Dispose();
    }

    /// <summary>
    /// Item 12: disposing a mapped file closes it (no new reads, writes or mappings) while its mappings keep working;
    /// the page cache is freed when the last mapping goes.
    /// </summary>
    [Fact]
    public void DisposingAMappedFileClosesItAndFreesThePageCacheAfterTheLastUnmap()
    {
        using Machine machine = TestMachines.Create(1, 16);
        var mm = new AddressSpace(machine, new MmapLockStrategy());
        var file = new SimFile(machine, 8 * (long)Page);
        ulong a = machine.Run(0, cpu =>
        {
            ulong at = mm.Map(cpu, 8 * Page, Protection.ReadWrite, MappingKind.SharedFile, file);
            mm.Write(cpu, at, 5UL);
            mm.Protect(cpu, at + Page, Page, Protection.Read); // Three VMAs map the file now.
            return at;
        });
        Assert.Equal(3, file.Mappings);
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.Read(0, new byte[8]));
        Assert.Throws<ObjectDisposedException>(() => file.Write(0, new byte[8]));
        using var mm2 = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(0, cpu =>
        {
            Assert.Throws<ObjectDisposedException>(() => mm2.Map(cpu, Page, Protection.Read, MappingKind.PrivateFile, file));
            Assert.Equal(5UL, mm.Read<ulong>(cpu, a)); // The mapping still works,
            mm.Write(cpu, a + (5 * Page), 6UL); // and faults in pages the cache did not hold yet.
            mm.Unmap(cpu, a, 4 * Page);
        });
        Assert.Equal(0, mm2.Vmas.Count);
        Assert.Equal(1, file.Mappings);
        Assert.NotEqual(0, machine.Memory.Census().PageCache);
        mm.Dispose(); // Releases the last mapping: the page cache goes.
        Assert.Equal(0, file.Mappings);
        machine.Srcu.Barrier();
        Assert.Equal(0, machine.Memory.Census().PageCache);
    }

    /// <summary>Item 13: offsets near 2^63 and bad ranges name the right parameter, before any state changes.</summary>
    [Fact]
    public void OverflowingFileOffsetsAndRangesAreRefusedNamingTheParameter()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        using var file = new SimFile(machine, 4 * (long)Page);
        using var readOnly = SimFile.FromContents(machine, new byte[(int)Page], writable: false);
        machine.Run(0, cpu =>
        {
            foreach (long offset in new[] { long.MaxValue - (long)Page + 1, (long.MaxValue / 4096) * 4096, 8 * (long)Page })
            {
                var e = Assert.Throws<ArgumentOutOfRangeException>(() => mm.Map(cpu, Page, Protection.Read, MappingKind.PrivateFile, file, offset));
                Assert.Equal("fileOffset", e.ParamName);
            }
        });
        Assert.Equal(0, mm.Vmas.Count);
        Assert.Equal(0, file.Mappings);
        Assert.Equal("offset", Assert.Throws<ArgumentOutOfRangeException>(() => file.Read(-1, new byte[8])).ParamName);
        Assert.Equal("offset", Assert.Throws<ArgumentOutOfRangeException>(() => file.Write(long.MaxValue, new byte[8])).ParamName);
        Assert.Equal("into", Assert.Throws<ArgumentException>(() => file.Read((4 * (long)Page) - 4, new byte[8])).ParamName);
        Assert.Equal("data", Assert.Throws<ArgumentException>(() => file.Write((4 * (long)Page) - 4, new byte[8])).ParamName);
        Assert.Throws<InvalidOperationException>(() => readOnly.Write(0, new byte[8])); // EBADF, item 15's second half.
        Assert.Equal(0, file.CachedPages);
    }

    /// <summary>Item 14: execute implies readable, for present and never-touched pages alike, under every strategy.</summary>
    [Theory]
    [MemberData(nameof(Strategies))]
    public void ExecuteOnlyPagesReadTheSameWhetherPresentOrNot(string strategy)
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy(strategy));
        using var file = new SimFile(machine, 4 * (long)Page);
        machine.Run(0, cpu =>
        {
            foreach (MappingKind kind in new[] { MappingKind.Anonymous, MappingKind.PrivateFile, MappingKind.SharedFile })
            {
                ulong a = mm.Map(cpu, 4 * Page, Protection.ReadWrite, kind, kind == MappingKind.Anonymous ? null : file);
                mm.Write(cpu, a, 9UL); // Page 0 present; pages 1..3 never touched.
                mm.Protect(cpu, a, 4 * Page, Protection.Execute);
                for (ulong p = 0; p < 4; p++)
                {
                    Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, a + (p * Page), out ulong _));
                    Assert.Equal(AccessResult.SegmentationFault, mm.TryWrite(cpu, a + (p * Page), 1UL));
                }

                TestMachines.AssertNoViolations(mm, file);
                mm.Unmap(cpu, a, 4 * Page);
            }
        });
    }

    /// <summary>Item 14's checker: a PTE whose rights differ from its VMA's (here: not user-accessible) is reported.</summary>
    [Fact]
    public unsafe void TheCheckerCatchesAPteWhoseRightsDifferFromItsVma()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        ulong a = machine.Run(0, cpu =>
        {
            ulong at = mm.Map(cpu, Page, Protection.Read | Protection.Execute);
            mm.TryRead(cpu, at, out ulong _);
            return at;
        });
        Assert.Empty(InvariantChecker.CheckPtes(mm));

        // Planted bug: the history-dependent PTE of the old Protect(Execute) path, the other way round (user bit lost).
        ulong* entry = mm.PageTable.WalkLockless(a, out _);
        ulong good = *entry;
        *entry = good & ~Pte.User;
        Assert.Contains(InvariantChecker.CheckPtes(mm), v => v.Contains("rights differ"));
        *entry = good | Pte.NoExecute;
        Assert.Contains(InvariantChecker.CheckPtes(mm), v => v.Contains("no-execute"));
        *entry = good;
        Assert.Empty(InvariantChecker.CheckPtes(mm));
    }

    /// <summary>Item 15: a snapshot taken while another CPU maps and unmaps never shows a retired or poisoned VMA.</summary>
    [Fact]
    public void VmaSnapshotsAreConsistentCopiesUnderConcurrentUnmaps()
    {
        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy(), new AddressSpaceOptions { PoisonRetiredVmas = true });
        int stop = 0;
        Task churn = machine.RunAsync(1, cpu =>
        {
            var rng = new Random(15);
            while (Volatile.Read(ref stop) == 0)
            {
                ulong a = mm.Map(cpu, (ulong)rng.Next(1, 4) * Page, Protection.ReadWrite);
                mm.Unmap(cpu, a, Page);
                machine.Srcu.Synchronize(); // Let retired VMAs reach the slab (and be poisoned) quickly.
            }
        });
        long snapshots = 0;
        var until = DateTime.UtcNow + TimeSpan.FromMilliseconds(500);
        try
        {
            while (DateTime.UtcNow < until)
            {
                IReadOnlyList<VmaInfo> all = mm.Vmas.Snapshot();
                ulong previousEnd = 0;
                foreach (VmaInfo v in all)
                {
                    Assert.True(v.Start < v.End && v.Start >= previousEnd && v.End <= PageTable.UserTop, $"Inconsistent snapshot: {string.Join(", ", all)}");
                    previousEnd = v.End;
                }

                snapshots++;
            }
        }
        finally
        {
            Volatile.Write(ref stop, 1);
            churn.Wait(Bound);
        }

        Assert.True(snapshots > 10);
        Assert.Equal(0, mm.Slab.PoisonedReads);
    }

    /// <summary>The shootdown ack watchdog: a CPU that stops serving IPIs is named (and, in Debug, the wait throws).</summary>
    [Fact]
    public void AShootdownStuckOnASilentCpuIsReported()
    {
        using Machine machine = TestMachines.Create(2, 16, TimeSpan.FromSeconds(1));
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        ulong a = machine.Run(0, cpu => mm.Map(cpu, Page, Protection.ReadWrite));
        int silent = 0;
        Task quiet = machine.RunAsync(1, cpu =>
        {
            mm.Write(cpu, a, 1UL); // Loaded: shootdowns of this address space need CPU 1's ack.
            cpu.LocalIrqDisable();
            Volatile.Write(ref silent, 1);
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(2.5);
            while (DateTime.UtcNow < until)
            {
                Thread.SpinWait(100); // Interrupts off and no interrupt point: IPIs wait.
            }

            cpu.LocalIrqEnable();
        });
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref silent) != 0, Bound));
        Task shoot = machine.RunAsync(0, cpu => cpu.Shootdown(mm.TlbContext, a, a + Page));
        Assert.True(((IAsyncResult)shoot).AsyncWaitHandle.WaitOne(Bound), "The shootdown never finished.");
        Assert.True(quiet.Wait(Bound));
        Assert.Contains(machine.Violations, v => v.Contains("acknowledgements from CPU 1"));
        if (SpecVm.Smp.InterleavingHooks.CompiledIn)
        {
            // Debug build: the watchdog throws out of the wait.
            Assert.IsType<ShootdownTimeoutException>(shoot.Exception!.InnerException!.InnerException);
        }
        else
        {
            Assert.True(shoot.IsCompletedSuccessfully, "Release keeps waiting and completes once CPU 1 acknowledges.");
        }
    }
}
