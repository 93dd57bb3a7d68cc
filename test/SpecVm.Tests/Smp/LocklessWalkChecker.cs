using System.Diagnostics;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Smp;
using Xunit.Abstractions;

namespace SpecVm.Tests.Smp;

/// <summary>
/// The lockless-walk checker. CPU 0 maps a 2 MiB region, touches it and unmaps it, over and over (each unmap detaches
/// and frees the region's PTE table). CPU 1, in the address space's CPU mask, loops: disable interrupts, walk to the
/// region's PTE table without locks, then keep looking at that table's frame for a while — it must stay a level-1
/// page table of this region until interrupts are enabled again, because the table is freed only after a shootdown
/// that CPU 1, with interrupts off, has not acknowledged (the x86 fast-GUP argument).
/// </summary>
internal static class LocklessWalkChecker
{
    /// <summary>The region CPU 0 maps and unmaps (2 MiB aligned, so it owns one PTE table).</summary>
    public const ulong Region = 0x4000_0000;

    /// <summary>Looks at the table frame this many times per walk, spinning a little in between, irqs off.</summary>
    private const int LooksPerWalk = 64;

    /// <summary>Runs until <paramref name="budget"/> is spent (or, when <paramref name="stopAtFirst"/>, a violation is seen).</summary>
    public static Report Run(Machine machine, AddressSpace mm, TimeSpan budget, bool stopAtFirst, int seed, ITestOutputHelper output)
    {
        var s = new Shared();
        long deadline = Stopwatch.GetTimestamp() + (long)(budget.TotalSeconds * Stopwatch.Frequency);
        Task walker = machine.RunAsync(1, cpu => Walk(machine, mm, cpu, s));
        Task mapper = machine.RunAsync(0, cpu => MapUnmap(mm, cpu, s, deadline, stopAtFirst, seed));
        Spin.Join(budget + Spin.HandOff + Spin.HandOff, "The lockless-walk rounds", walker, mapper);
        var report = new Report(s.Cycles, s.Walks, s.TablesSeen, s.Violations, s.FirstViolation);
        output.WriteLine(report.ToString());
        return report;
    }

    private static void MapUnmap(AddressSpace mm, Cpu cpu, Shared s, long deadline, bool stopAtFirst, int seed)
    {
        var rng = new Random(seed);
        try
        {
            Spin.Until(cpu, () => Volatile.Read(ref s.WalkerReady) != 0, "the walker to load the address space");
            while (Stopwatch.GetTimestamp() < deadline && !(stopAtFirst && Volatile.Read(ref s.Violations) != 0))
            {
                mm.Map(cpu, PageTable2M, Protection.ReadWrite, fixedAddress: Region);
                int pages = 1 + rng.Next(4);
                for (int i = 0; i < pages; i++)
                {
                    mm.Write(cpu, Region + ((ulong)rng.Next(512) << 12), 1UL);
                }

                Thread.SpinWait(rng.Next(0, 128));
                mm.Unmap(cpu, Region, PageTable2M);
                s.Cycles++;
            }
        }
        finally
        {
            Volatile.Write(ref s.Stop, 1);
        }
    }

    private const ulong PageTable2M = Paging.PageTable.PteTableSpan;

    private static unsafe void Walk(Machine machine, AddressSpace mm, Cpu cpu, Shared s)
    {
        // Join the address space's CPU mask, as a CPU running one of its threads would.
        cpu.SwitchTo(mm.TlbContext);
        Volatile.Write(ref s.WalkerReady, 1);
        while (Volatile.Read(ref s.Stop) == 0)
        {
            cpu.LocalIrqDisable();
            try
            {
                s.Walks++;
                ulong* entry = mm.PageTable.WalkLockless(Region, out long ptePfn);
                if (entry != null)
                {
                    s.TablesSeen++;
                    _ = Volatile.Read(ref *entry);
                    for (int look = 0; look < LooksPerWalk; look++)
                    {
                        string? wrong = CheckTable(machine, ptePfn);
                        if (wrong != null)
                        {
                            Interlocked.Increment(ref s.Violations);
                            s.FirstViolation ??= $"walk {s.Walks}, look {look}: PTE table {ptePfn} {wrong} while interrupts were still disabled";
                            break;
                        }

                        Thread.SpinWait(4);
                    }
                }
            }
            finally
            {
                cpu.LocalIrqEnable();
            }
        }
    }

    /// <summary>Null if frame <paramref name="pfn"/> is still the region's level-1 page table, else what it is now.</summary>
    private static string? CheckTable(Machine machine, long pfn)
    {
        ref PageFrame frame = ref machine.Memory.Frame(pfn);
        FrameState state = frame.ReadState();
        if (state != FrameState.PageTable)
        {
            return $"is {state}";
        }

        long level = Volatile.Read(ref frame.Owner);
        long baseVa = Volatile.Read(ref frame.Index);
        return level == 1 && baseVa == (long)Region ? null : $"was reused (level {level}, base 0x{baseVa:x})";
    }

    /// <summary>What a run saw.</summary>
    public sealed record Report(long Cycles, long Walks, long TablesSeen, long Violations, string? FirstViolation);

    private sealed class Shared
    {
        public int WalkerReady;
        public int Stop;
        public long Cycles;
        public long Walks;
        public long TablesSeen;
        public long Violations;
        public string? FirstViolation;
    }
}
