using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using Xunit.Abstractions;

namespace SpecVm.Tests.Mm;

/// <summary>
/// Two CPUs on one address space for a bounded time. The layout puts, in each of four 2 MiB regions (one PTE table
/// each), a stable 1 MiB mapping that CPU 1 writes and reads back, next to a 1 MiB churn area where CPU 0 maps
/// (anonymous, private and shared file), unmaps, protects and zaps; CPU 0 also flips stable chunks read-only and back
/// (CPU 1's writes there may then fail, and it records only the ones that succeed). Faults, zaps, protection changes
/// and PTE-table lifetimes therefore meet under the same page-table locks.
/// </summary>
internal sealed class ConcurrentStress(int seed, TimeSpan duration)
{
    public const ulong Base = 0x4000_0000;
    private const ulong Page = MmOracle.PageSize;
    private const ulong Region = 2UL << 20;
    private const int Regions = 4;
    private const int HalfPages = 256;

    public void Run(FaultStrategy strategy, ITestOutputHelper output, PerVmaLockScope scope = PerVmaLockScope.Full)
    {
        using Machine machine = TestMachines.Create(2, 64);
        long freeBefore = machine.Memory.Census().Free;
        var stableFile = new SimFile(machine, HalfPages * (long)Page);
        var churnFile = new MmOracle.FileModel(new SimFile(machine, 64 * (long)Page));
        new Random(seed).NextBytes(churnFile.Data);
        churnFile.File.Write(0, churnFile.Data);
        SimFile[] files = [stableFile, churnFile.File];
        using (var mm = new AddressSpace(machine, strategy, new AddressSpaceOptions { ZapBatchPages = 16, PerVmaLockScope = scope }))
        {
            machine.Run(0, cpu =>
            {
                mm.Map(cpu, HalfPages * Page, Protection.ReadWrite, MappingKind.SharedFile, stableFile, 0, Stable(0));
                for (int r = 1; r < Regions; r++)
                {
                    mm.Map(cpu, HalfPages * Page, Protection.ReadWrite, MappingKind.Anonymous, null, 0, Stable(r));
                }
            });

            var stop = new StopFlag(duration);
            var expected = new ulong[Regions * HalfPages];
            long rounds = 0;
            long segvs = 0;
            var churn = new MmOracle();
            long ops = 0;
            Task writer = machine.RunAsync(1, cpu => stop.OnFailure(() => rounds = Writer(cpu, mm, expected, stop, ref segvs)));
            Task mutator = machine.RunAsync(0, cpu => stop.OnFailure(() => ops = Mutator(cpu, mm, churn, churnFile, stop)));
            Task.WaitAll(writer, mutator);

            // Quiescent again: every stable page holds CPU 1's last successful write; the churn area matches the oracle.
            machine.Run(1, cpu => VerifyStable(cpu, mm, expected));
            machine.Run(0, cpu => VerifyChurn(cpu, mm, churn));
            TestMachines.AssertNoViolations(mm, files);
            CounterSnapshot c = machine.Snapshot();
            output.WriteLine($"{rounds} writer rounds ({segvs} writes refused while read-only), {ops} mutator ops; faults {c[CpuCounter.Faults]}, speculative {c[CpuCounter.SpecSuccess]}/{c[CpuCounter.SpecAttempts]}, per-VMA {c[CpuCounter.VmaLockSuccess]} (abort {c[CpuCounter.VmaLockAbort]}, retry {c[CpuCounter.VmaLockRetry]}, miss {c[CpuCounter.VmaLockMiss]}), zero page {c[CpuCounter.FaultZeroPage]}, shootdowns {c[CpuCounter.Shootdowns]}, IPIs {c[CpuCounter.IpisSent]}");
        }

        foreach (SimFile f in files)
        {
            f.Dispose();
        }

        TestMachines.AssertAllFramesFree(machine, freeBefore);
    }

    private static ulong Stable(int region) => Base + ((ulong)region * Region);

    private static ulong Churn(int region) => Stable(region) + (HalfPages * Page);

    private static ulong StableAddress(int index) => Stable(index / HalfPages) + ((ulong)(index % HalfPages) * Page) + Slot(index);

    private static ulong Slot(int index) => (ulong)(index * 8) % Page;

    private long Writer(Cpu cpu, AddressSpace mm, ulong[] expected, StopFlag stop, ref long segvs)
    {
        var rng = new Random(seed + 1);
        long round = 0;
        while (!stop.IsSet)
        {
            round++;
            for (int i = 0; i < expected.Length; i++)
            {
                ulong value = ((ulong)round << 20) | (uint)i;
                AccessResult r = mm.TryWrite(cpu, StableAddress(i), value);
                if (r == AccessResult.Ok)
                {
                    expected[i] = value;
                }
                else
                {
                    Assert.Equal(AccessResult.SegmentationFault, r); // Only while CPU 0 has the chunk read-only.
                    segvs++;
                }
            }

            for (int i = 0; i < expected.Length; i++)
            {
                Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, StableAddress(i), out ulong got));
                Assert.True(got == expected[i], $"Stable page {i} at 0x{StableAddress(i):x}: read 0x{got:x}, last wrote 0x{expected[i]:x} (round {round}).");
            }

            if (round % 3 == 0)
            {
                // Zap a chunk of an anonymous stable region: zeros come back (the shared file region keeps its data).
                int region = rng.Next(Regions);
                int first = rng.Next(HalfPages - 16);
                mm.DontNeed(cpu, Stable(region) + ((ulong)first * Page), 16 * Page);
                if (region != 0)
                {
                    Array.Clear(expected, (region * HalfPages) + first, 16);
                }
            }

            // Poke at the churn area too: any outcome is fine, but it must not crash or corrupt anything.
            for (int k = 0; k < 64; k++)
            {
                ulong a = Churn(rng.Next(Regions)) + ((ulong)rng.Next(HalfPages) * Page);
                _ = mm.TryRead(cpu, a, out ulong _);
            }
        }

        return round;
    }

    private long Mutator(Cpu cpu, AddressSpace mm, MmOracle churn, MmOracle.FileModel file, StopFlag stop)
    {
        var rng = new Random(seed);
        long ops = 0;
        (ulong Start, ulong Length)? readOnlyChunk = null;
        while (!stop.IsSet)
        {
            ops++;

            // Read stable pages behind CPU 1's back (racing its faults and zaps): whatever is seen must be zero or a
            // value CPU 1 wrote to that very page, never another page's word or garbage.
            for (int k = 0; k < 4; k++)
            {
                int i = rng.Next(Regions * HalfPages);
                Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, StableAddress(i), out ulong seen));
                Assert.True(seen == 0 || (seen & 0xFFFFF) == (ulong)i, $"CPU 0 read 0x{seen:x} from stable page {i}, which CPU 1 never wrote there.");
            }

            int region = rng.Next(Regions);
            ulong firstPage = (ulong)rng.Next(HalfPages);
            ulong pages = Math.Min((ulong)rng.Next(1, 33), HalfPages - firstPage);
            ulong start = Churn(region) + (firstPage * Page);
            ulong length = pages * Page;
            int op = rng.Next(100);
            if (op < 5)
            {
                // Flip a stable chunk read-only, or restore the one flipped before.
                if (readOnlyChunk is (ulong s, ulong l))
                {
                    mm.Protect(cpu, s, l, Protection.ReadWrite);
                    readOnlyChunk = null;
                }
                else
                {
                    ulong chunk = Stable(rng.Next(Regions)) + ((ulong)rng.Next(HalfPages - 32) * Page);
                    mm.Protect(cpu, chunk, 32 * Page, Protection.Read);
                    readOnlyChunk = (chunk, 32 * Page);
                }
            }
            else if (op < 30)
            {
                if (!churn.AnyMapped(start, length))
                {
                    var kind = (MappingKind)rng.Next(3);
                    Protection p = kind == MappingKind.Anonymous || rng.Next(2) == 0 ? Protection.ReadWrite : Protection.Read;
                    long offset = kind == MappingKind.Anonymous ? 0 : rng.Next((int)(file.File.Pages - (long)pages) + 1) * (long)Page;
                    mm.Map(cpu, length, p, kind, kind == MappingKind.Anonymous ? null : file.File, offset, start);
                    churn.Map(start, length, p, kind, kind == MappingKind.Anonymous ? null : file, offset);
                }
            }
            else if (op < 45)
            {
                mm.Unmap(cpu, start, length);
                churn.Unmap(start, length);
            }
            else if (op < 55)
            {
                Protection p = (Protection)rng.Next(3) switch { Protection.None => Protection.None, Protection.Read => Protection.Read, _ => Protection.ReadWrite };
                if (churn.Protect(start, length, p))
                {
                    mm.Protect(cpu, start, length, p);
                }
            }
            else if (op < 60)
            {
                if (churn.DontNeed(start, length))
                {
                    mm.DontNeed(cpu, start, length);
                }
            }
            else
            {
                for (ulong a = start; a < start + length; a += Page)
                {
                    ulong address = a + ((ulong)rng.Next(512) * 8);
                    if (op < 80)
                    {
                        ulong value = (ulong)rng.NextInt64();
                        AccessResult want = churn.Write(address, BitConverter.GetBytes(value));
                        AccessResult got = mm.TryWrite(cpu, address, value);
                        Assert.True(want == got, $"Churn write at 0x{address:x}: oracle {want}, got {got}.");
                    }
                    else
                    {
                        byte[] want = new byte[8];
                        AccessResult wantResult = churn.Read(address, want);
                        AccessResult got = mm.TryRead(cpu, address, out ulong value);
                        Assert.True(wantResult == got, $"Churn read at 0x{address:x}: oracle {wantResult}, got {got}.");
                        Assert.True(got != AccessResult.Ok || value == BitConverter.ToUInt64(want), $"Churn read at 0x{address:x}: 0x{value:x}, oracle 0x{BitConverter.ToUInt64(want):x}.");
                    }
                }
            }
        }

        if (readOnlyChunk is (ulong rs, ulong rl))
        {
            mm.Protect(cpu, rs, rl, Protection.ReadWrite);
        }

        return ops;
    }

    private static void VerifyStable(Cpu cpu, AddressSpace mm, ulong[] expected)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, StableAddress(i), out ulong got));
            Assert.True(got == expected[i], $"After the run, stable page {i} at 0x{StableAddress(i):x} holds 0x{got:x}, expected 0x{expected[i]:x}.");
        }
    }

    private static void VerifyChurn(Cpu cpu, AddressSpace mm, MmOracle churn)
    {
        byte[] want = new byte[Page];
        byte[] got = new byte[Page];
        for (int region = 0; region < Regions; region++)
        {
            for (ulong page = 0; page < HalfPages; page++)
            {
                ulong a = Churn(region) + (page * Page);
                AccessResult expected = churn.Read(a, want);
                AccessResult result = mm.TryReadBytes(cpu, a, got);
                Assert.True(expected == result, $"After the run, churn page 0x{a:x}: oracle {expected}, got {result}.");
                Assert.True(result != AccessResult.Ok || want.AsSpan().SequenceEqual(got), $"After the run, churn page 0x{a:x} differs from the oracle.");
            }
        }
    }

    /// <summary>A deadline that any worker's failure also trips, so the other stops early instead of running on.</summary>
    private sealed class StopFlag(TimeSpan duration)
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private volatile bool _failed;

        public bool IsSet => _failed || _clock.Elapsed > duration;

        public void OnFailure(Action work)
        {
            try
            {
                work();
            }
            catch
            {
                _failed = true;
                throw;
            }
        }
    }
}
