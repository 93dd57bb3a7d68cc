using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using Xunit.Abstractions;

namespace SpecVm.Tests.Mm;

/// <summary>
/// The address-space suite, run once per fault strategy of the catalog (<see cref="StrategyCatalog.CorrectNames"/>: a
/// new strategy is in it without an edit here): seeded random sequences against a sequential oracle, copy-on-write and
/// shared-file semantics, and a bounded two-CPU stress that ends with the oracle and the invariant checker. Every
/// strategy must give exactly the results the oracle predicts.
/// </summary>
[Collection(MachineCollection.Name)]
public sealed class AddressSpaceSuite(ITestOutputHelper output)
{
    private const ulong Page = 4096;

    private ITestOutputHelper Output { get; } = output;

    /// <summary>Every correct strategy of the catalog.</summary>
    public static TheoryData<string> Strategies => [.. TestMachines.StrategyNames];

    /// <summary>Every strategy × seeds 1 to 6.</summary>
    public static TheoryData<string, int> StrategiesAndSeeds()
    {
        var data = new TheoryData<string, int>();
        foreach (string name in TestMachines.StrategyNames)
        {
            for (int seed = 1; seed <= 6; seed++)
            {
                data.Add(name, seed);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(StrategiesAndSeeds))]
    public void RandomSequencesMatchTheOracle(string name, int seed)
    {
        FaultStrategy strategy = TestMachines.Strategy(name);
        Output.WriteLine($"strategy {strategy.Name}, seed {seed}");
        List<string> trace = RandomSequence.Run(strategy, seed, steps: 2000);
        Output.WriteLine($"{trace.Count} results checked; last: {trace[^1]}");
    }

    [Theory]
    [MemberData(nameof(Strategies))]
    public void PrivateFileMappingSeesTheFileAndKeepsWritesPrivate(string name)
    {
        using Machine machine = TestMachines.Create(2, 32);
        long freeBefore = machine.Memory.Census().Free;
        var file = new SimFile(machine, 4 * (long)Page);
        byte[] content = Pattern(4 * (int)Page, 7);
        file.Write(0, content);
        using (var mm = new AddressSpace(machine, TestMachines.Strategy(name)))
        {
            machine.Run(0, cpu =>
            {
                ulong a = mm.Map(cpu, 4 * Page, Protection.ReadWrite, MappingKind.PrivateFile, file);
                ulong b = mm.Map(cpu, 4 * Page, Protection.Read, MappingKind.PrivateFile, file);
                Assert.Equal(content, ReadAll(mm, cpu, a, 4 * Page));

                // Writes copy the page: the mapping sees them, the file and the other mapping do not.
                mm.Write(cpu, a + 8, 0xC0FFEEUL);
                Assert.Equal(0xC0FFEEUL, mm.Read<ulong>(cpu, a + 8));
                Assert.Equal(content, FileBytes(file));
                Assert.Equal(content, ReadAll(mm, cpu, b, 4 * Page));
                Assert.Equal(AccessResult.SegmentationFault, mm.TryWrite(cpu, b, 1UL));

                // An untouched (or only read) private page still shows the page cache, so a later file write shows.
                Assert.Equal(content[(int)Page], mm.Read<byte>(cpu, a + Page));
                file.Write((long)Page, [0xAB]);
                Assert.Equal(0xAB, mm.Read<byte>(cpu, a + Page));

                // The copied page keeps the private write; DontNeed drops the copy and the file's bytes come back.
                file.Write(8, BitConverter.GetBytes(0x1234UL));
                Assert.Equal(0xC0FFEEUL, mm.Read<ulong>(cpu, a + 8));
                mm.DontNeed(cpu, a, Page);
                Assert.Equal(0x1234UL, mm.Read<ulong>(cpu, a + 8));
            });
            TestMachines.AssertNoViolations(mm, file);
        }

        file.Dispose();
        TestMachines.AssertAllFramesFree(machine, freeBefore);
    }

    [Theory]
    [MemberData(nameof(Strategies))]
    public void SharedFileWritesReachTheFileAndEveryOtherSharedMapping(string name)
    {
        using Machine machine = TestMachines.Create(2, 32);
        long freeBefore = machine.Memory.Census().Free;
        var file = new SimFile(machine, 4 * (long)Page);
        byte[] content = Pattern(4 * (int)Page, 3);
        file.Write(0, content);
        using (var mm = new AddressSpace(machine, TestMachines.Strategy(name)))
        {
            ulong a = machine.Run(0, cpu => mm.Map(cpu, 4 * Page, Protection.ReadWrite, MappingKind.SharedFile, file));
            ulong b = machine.Run(0, cpu => mm.Map(cpu, 2 * Page, Protection.ReadWrite, MappingKind.SharedFile, file, 2 * (long)Page));
            machine.Run(0, cpu =>
            {
                Assert.Equal(content, ReadAll(mm, cpu, a, 4 * Page));
                mm.Write(cpu, a + (2 * Page) + 16, 0x5555UL);
            });

            // Another CPU sees it through the second mapping (same page-cache page), and so does pread.
            machine.Run(1, cpu => Assert.Equal(0x5555UL, mm.Read<ulong>(cpu, b + 16)));
            byte[] expected = (byte[])content.Clone();
            BitConverter.GetBytes(0x5555UL).CopyTo(expected, (2 * (int)Page) + 16);
            Assert.Equal(expected, FileBytes(file));

            // And the other way round: pwrite shows through both mappings.
            file.Write((3 * (long)Page) + 100, BitConverter.GetBytes(0x7777UL));
            machine.Run(1, cpu =>
            {
                Assert.Equal(0x7777UL, mm.Read<ulong>(cpu, a + (3 * Page) + 100));
                Assert.Equal(0x7777UL, mm.Read<ulong>(cpu, b + Page + 100));
                mm.Protect(cpu, b, 2 * Page, Protection.Read);
                Assert.Equal(AccessResult.SegmentationFault, mm.TryWrite(cpu, b, 1UL));
                mm.Write(cpu, a + (2 * Page), 9UL);
                Assert.Equal(9UL, mm.Read<ulong>(cpu, b));
            });
            TestMachines.AssertNoViolations(mm, file);
        }

        file.Dispose();
        TestMachines.AssertAllFramesFree(machine, freeBefore);
    }

    [Theory]
    [MemberData(nameof(Strategies))]
    public void AnIdleCpuNeverUsesAStaleTranslationAfterItWakes(string name)
    {
        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, TestMachines.Strategy(name));
        ulong a = machine.Run(0, cpu => mm.Map(cpu, 2 * Page, Protection.ReadWrite));

        // CPU 1 caches both translations, then goes idle (lazy): CPU 0's shootdowns skip it.
        machine.Run(1, cpu =>
        {
            mm.Write(cpu, a, 5UL);
            mm.Write(cpu, a + Page, 6UL);
        });
        machine.Run(0, cpu => mm.Unmap(cpu, a, Page));
        machine.Run(1, cpu => Assert.Equal(AccessResult.SegmentationFault, mm.TryRead(cpu, a, out ulong _)));
        machine.Run(0, cpu => mm.Protect(cpu, a + Page, Page, Protection.Read));
        machine.Run(1, cpu => Assert.Equal(AccessResult.SegmentationFault, mm.TryWrite(cpu, a + Page, 1UL)));
        machine.Run(0, cpu => mm.DontNeed(cpu, a + Page, Page));
        machine.Run(1, cpu => Assert.Equal(0UL, mm.Read<ulong>(cpu, a + Page)));
        machine.Run(0, cpu => mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: a));
        machine.Run(1, cpu => Assert.Equal(0UL, mm.Read<ulong>(cpu, a)));
        TestMachines.AssertNoViolations(mm);
    }

    [Theory]
    [MemberData(nameof(Strategies))]
    public void RunningOutOfFramesIsAnErrorNotACrashAndNothingLeaks(string name)
    {
        using Machine machine = TestMachines.Create(2, 1); // 256 frames.
        long freeBefore = machine.Memory.Census().Free;
        var file = new SimFile(machine, 64 * (long)Page);
        using (var mm = new AddressSpace(machine, TestMachines.Strategy(name)))
        {
            machine.Run(0, cpu =>
            {
                ulong f = mm.Map(cpu, 64 * Page, Protection.ReadWrite, MappingKind.PrivateFile, file);
                ulong a = mm.Map(cpu, 2UL << 20, Protection.ReadWrite);
                for (ulong i = 0; i < 64; i++)
                {
                    Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, f + (i * Page), out ulong _));
                }

                AccessResult r = AccessResult.Ok;
                for (ulong i = 0; i < 512 && r == AccessResult.Ok; i++)
                {
                    r = mm.TryWrite(cpu, a + (i * Page), i);
                }

                Assert.Equal(AccessResult.OutOfMemory, r);
                Assert.Equal(AccessResult.OutOfMemory, mm.TryWrite(cpu, f, 1UL)); // Copy-on-write needs a frame too.
                Assert.Throws<SegmentationFaultException>(() => mm.Write(cpu, f, 1UL));
                TestMachines.AssertNoViolations(mm, file);

                // Freeing memory makes the same accesses work again.
                mm.Unmap(cpu, a, 2UL << 20);
                Assert.Equal(AccessResult.Ok, mm.TryWrite(cpu, f, 5UL));
            });
            TestMachines.AssertNoViolations(mm, file);
        }

        file.Dispose();
        TestMachines.AssertAllFramesFree(machine, freeBefore);
    }

    /// <summary>
    /// CPU 1 writes and reads back patterns in stable mappings (anonymous and shared file) that share PTE tables
    /// with a churn area, while CPU 0 maps, unmaps, protects and zaps the churn area (checking it against its own
    /// oracle) and flips the stable mappings read-only and back. At the end every stable page holds CPU 1's last
    /// successful write, every churn page matches CPU 0's oracle, and the invariants hold.
    /// </summary>
    [Theory]
    [MemberData(nameof(Strategies))]
    public void ConcurrentFaultsWhileAnotherCpuMapsUnmapsAndProtectsKeepEveryByte(string name)
    {
        int seed = Environment.TickCount;
        Output.WriteLine($"seed {seed}");
        FaultStrategy strategy = TestMachines.Strategy(name);
        Output.WriteLine($"strategy {strategy.Name}");
        var stress = new ConcurrentStress(seed, TimeSpan.FromSeconds(1.5));
        stress.Run(strategy, Output);
    }

    /// <summary>
    /// Both CPUs write their own word of the same not-yet-present pages at once (anonymous, private file, shared
    /// file), so their faults race to install and to copy on write; then both check that neither write was lost, and
    /// CPU 0 zaps everything for the next round.
    /// </summary>
    [Theory]
    [MemberData(nameof(Strategies))]
    public void TwoCpusFaultingTheSamePagesAtOnceLoseNoWrite(string name)
    {
        const int Pages = 64;
        FaultStrategy strategy = TestMachines.Strategy(name);
        Output.WriteLine($"strategy {strategy.Name}");
        using Machine machine = TestMachines.Create(2, 32);
        long freeBefore = machine.Memory.Census().Free;
        var file = new SimFile(machine, 2 * Pages * (long)Page);
        file.Write(0, Pattern(2 * Pages * (int)Page, 5));
        long rounds = 0;
        using (var mm = new AddressSpace(machine, strategy, new AddressSpaceOptions { ZapBatchPages = 8 }))
        {
            ulong[] regions = machine.Run(0, cpu => new[]
            {
                mm.Map(cpu, Pages * Page, Protection.ReadWrite),
                mm.Map(cpu, Pages * Page, Protection.ReadWrite, MappingKind.PrivateFile, file),
                mm.Map(cpu, Pages * Page, Protection.ReadWrite, MappingKind.SharedFile, file, Pages * (long)Page),
            });
            var barrier = new SpinBarrier(2);
            var clock = Stopwatch.StartNew();
            bool stop = false;
            machine.RunOn([0, 1], cpu =>
            {
                try
                {
                    WriteAndCheckRounds(cpu);
                }
                catch
                {
                    barrier.Break();
                    throw;
                }
            });

            void WriteAndCheckRounds(Cpu cpu)
            {
                ulong slot = (ulong)cpu.Id * 8;
                for (ulong round = 1; ; round++)
                {
                    foreach (ulong region in regions)
                    {
                        for (ulong p = 0; p < Pages; p++)
                        {
                            mm.Write(cpu, region + (p * Page) + slot, round);
                        }
                    }

                    barrier.SignalAndWait(cpu);
                    foreach (ulong region in regions)
                    {
                        for (ulong p = 0; p < Pages; p++)
                        {
                            ulong a = region + (p * Page);
                            Assert.True(mm.Read<ulong>(cpu, a) == round && mm.Read<ulong>(cpu, a + 8) == round, $"Round {round}: page 0x{a:x} lost a write (CPU 0 wrote {round}, reads {mm.Read<ulong>(cpu, a)}; CPU 1 wrote {round}, reads {mm.Read<ulong>(cpu, a + 8)}).");
                        }
                    }

                    if (cpu.Id == 0)
                    {
                        // One CPU decides, before the barrier, so both leave after the same round.
                        Volatile.Write(ref stop, clock.Elapsed >= TimeSpan.FromSeconds(1) && round > 1);
                    }

                    barrier.SignalAndWait(cpu);
                    if (cpu.Id == 0)
                    {
                        foreach (ulong region in regions)
                        {
                            mm.DontNeed(cpu, region, Pages * Page);
                        }

                        rounds = (long)round;
                    }

                    barrier.SignalAndWait(cpu);
                    if (Volatile.Read(ref stop))
                    {
                        return;
                    }
                }
            }

            CounterSnapshot c = machine.Snapshot();
            Output.WriteLine($"{rounds} rounds; faults that found the work done {c[CpuCounter.FaultRaced]}, copy-on-write {c[CpuCounter.FaultWriteProtect]}, speculative {c[CpuCounter.SpecSuccess]}");
            TestMachines.AssertNoViolations(mm, file);
        }

        file.Dispose();
        TestMachines.AssertAllFramesFree(machine, freeBefore);
    }

    private static byte[] Pattern(int length, int seed)
    {
        byte[] bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static byte[] ReadAll(AddressSpace mm, Cpu cpu, ulong address, ulong length)
    {
        byte[] bytes = new byte[length];
        Assert.Equal(AccessResult.Ok, mm.TryReadBytes(cpu, address, bytes));
        return bytes;
    }

    /// <summary>A barrier for CPUs that spins serving IPIs: a CPU blocked without going lazy would never answer a shootdown.</summary>
    private sealed class SpinBarrier(int parties)
    {
        private int _arrived;
        private int _phase;
        private bool _broken;

        public void SignalAndWait(Cpu cpu)
        {
            int phase = Volatile.Read(ref _phase);
            if (Interlocked.Increment(ref _arrived) == parties)
            {
                _arrived = 0;
                Volatile.Write(ref _phase, phase + 1);
                return;
            }

            long started = Stopwatch.GetTimestamp();
            while (Volatile.Read(ref _phase) == phase)
            {
                if (Volatile.Read(ref _broken) || Stopwatch.GetElapsedTime(started) > TimeSpan.FromSeconds(30))
                {
                    throw new InvalidOperationException($"CPU {cpu.Id}: the other CPU never reached the barrier.");
                }

                cpu.Relax();
                Thread.SpinWait(20);
            }
        }

        /// <summary>A party failed: release the others (with an error) instead of leaving them spinning.</summary>
        public void Break() => Volatile.Write(ref _broken, true);
    }

    private static byte[] FileBytes(SimFile file)
    {
        byte[] bytes = new byte[file.Length];
        file.Read(0, bytes);
        return bytes;
    }
}

/// <summary>Every strategy gives exactly the same results for the same random sequence.</summary>
[Collection(MachineCollection.Name)]
public sealed class FaultStrategyEquivalenceTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    public void EveryStrategyGivesIdenticalResults(int seed)
    {
        output.WriteLine($"seed {seed}");
        var sw = Stopwatch.StartNew();
        List<string> reference = RandomSequence.Run(TestMachines.Strategy(TestMachines.StrategyNames[0]), seed, steps: 1500);
        foreach (string name in TestMachines.StrategyNames.Skip(1))
        {
            List<string> trace = RandomSequence.Run(TestMachines.Strategy(name), seed, steps: 1500);
            int i = 0;
            while (i < reference.Count && i < trace.Count && reference[i] == trace[i])
            {
                i++;
            }

            Assert.True(i == reference.Count && i == trace.Count, $"{name} differs from {TestMachines.StrategyNames[0]} at result {i}: '{(i < trace.Count ? trace[i] : "(end)")}' vs '{(i < reference.Count ? reference[i] : "(end)")}'.");
        }

        output.WriteLine($"{reference.Count} results identical for {TestMachines.StrategyNames.Count} strategies in {sw.ElapsedMilliseconds} ms");
    }
}
