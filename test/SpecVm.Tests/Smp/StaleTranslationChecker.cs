using System.Diagnostics;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;
using Xunit.Abstractions;

namespace SpecVm.Tests.Smp;

/// <summary>How CPU 1 behaves while it hammers the page in <see cref="StaleTranslationChecker"/>.</summary>
internal enum HammerMode
{
    /// <summary>Stays awake and hammers (TLB hits) until it sees the unmap.</summary>
    Awake,

    /// <summary>Naps now and then between accesses (lazy, then catches up on wake), racing the shootdowns.</summary>
    Napping,

    /// <summary>Planted bug: marks itself lazy and keeps running, so shootdowns skip it and its TLB goes stale.</summary>
    PlantRunWhileLazy,
}

/// <summary>
/// The stale-translation checker. Round after round, CPU 0 maps a page, waits until CPU 1 has it in its TLB, unmaps it
/// (zap, shootdown, free) at a random moment while CPU 1 hammers it with reads and writes, takes the freed frame back
/// from the allocator, fills it with a marker and only then raises the round's "unmapped" flag. CPU 1 hammers until it
/// sees the flag and then tries once more. Two kinds of evidence of a translation used after the shootdown returned:
/// an access that succeeded after CPU 1 saw the flag (it must be a segmentation fault), and a reclaimed frame whose
/// marker CPU 1 overwrote.
/// </summary>
internal static class StaleTranslationChecker
{
    /// <summary>The word CPU 0 fills a reclaimed frame with.</summary>
    public const ulong Marker = 0xDEAD_BEEF_F00D_CAFE;

    /// <summary>Frames CPU 0 takes from its cache while looking for the one it just freed.</summary>
    private const int ReclaimTries = 8;

    /// <summary>Runs rounds until <paramref name="budget"/> is spent (or, when <paramref name="stopAtFirst"/>, a violation is seen).</summary>
    /// <remarks>
    /// With <paramref name="keepTable"/>, CPU 0 first maps and touches a keeper page just above where the rounds' pages
    /// go, so that their PTE table survives each unmap and the shootdowns free no table (the case targeted shootdowns
    /// target).
    /// </remarks>
    public static Report Run(Machine machine, AddressSpace mm, HammerMode mode, TimeSpan budget, bool stopAtFirst, int seed, ITestOutputHelper output, bool keepTable = false)
    {
        var s = new Shared();
        if (keepTable)
        {
            machine.Run(0, cpu => mm.Write(cpu, mm.Map(cpu, PhysicalMemory.PageSize, Protection.ReadWrite), 1UL));
        }

        var deadline = Stopwatch.GetTimestamp() + (long)(budget.TotalSeconds * Stopwatch.Frequency);
        Task driver = machine.RunAsync(0, cpu => Drive(machine, mm, cpu, s, deadline, stopAtFirst, seed));
        Task hammer = machine.RunAsync(1, cpu => Hammer(mm, cpu, s, mode, seed));
        Spin.Join(budget + Spin.HandOff + Spin.HandOff, "The stale-translation rounds", driver, hammer);
        var report = new Report(s.Rounds, s.Reclaimed, s.Hits, s.LateAccesses, s.StaleWrites, s.FirstViolation);
        output.WriteLine($"{mode}: {report}");
        return report;
    }

    private static unsafe long PfnOf(AddressSpace mm, ulong va)
    {
        ulong* entry = mm.PageTable.WalkLockless(va, out _);
        Assert.True(entry != null, $"No PTE table for 0x{va:x} right after touching it.");
        var pte = new Pte(Volatile.Read(ref *entry));
        Assert.True(pte.IsPresent, $"PTE of 0x{va:x} not present right after touching it.");
        return pte.Pfn;
    }

    private static void Drive(Machine machine, AddressSpace mm, Cpu cpu, Shared s, long deadline, bool stopAtFirst, int seed)
    {
        var rng = new Random(seed);
        var spare = new List<long>(ReclaimTries);
        try
        {
            for (long r = 1; Stopwatch.GetTimestamp() < deadline; r++)
            {
                if (stopAtFirst && (Volatile.Read(ref s.LateAccesses) != 0 || s.StaleWrites != 0))
                {
                    break;
                }

                ulong va = mm.Map(cpu, PhysicalMemory.PageSize, Protection.ReadWrite);
                mm.Write(cpu, va, 0UL);
                long pfn = PfnOf(mm, va);
                s.Va = va;

                // Release: the address is visible before the round number that tells CPU 1 to use it.
                Volatile.Write(ref s.Mapped, r);
                Spin.Until(cpu, () => Volatile.Read(ref s.Hot) == r, $"CPU 1 to load round {r}'s page");

                // Let CPU 1 hit its TLB for a random while, so the unmap lands at varied points of its loop.
                Thread.SpinWait(rng.Next(0, 256));
                mm.Unmap(cpu, va, PhysicalMemory.PageSize);

                // The shootdown has returned and the frame is free: take it back and mark it before raising the flag.
                long reclaimed = -1;
                for (int i = 0; i < ReclaimTries; i++)
                {
                    long f = machine.Frames.Allocate(cpu.Id, FrameState.Anonymous);
                    if (f == pfn)
                    {
                        reclaimed = f;
                        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(machine.Memory.FrameSpan(f)).Fill(Marker);
                        break;
                    }

                    spare.Add(f);
                }

                foreach (long f in spare)
                {
                    machine.Frames.Free(cpu.Id, f);
                }

                spare.Clear();

                // Release: the marker is written before CPU 1 may see the flag.
                Volatile.Write(ref s.Unmapped, r);
                Spin.Until(cpu, () => Volatile.Read(ref s.Done) == r, $"CPU 1 to finish round {r}");
                s.Rounds = r;
                if (reclaimed >= 0)
                {
                    s.Reclaimed++;
                    ReadOnlySpan<ulong> words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(machine.Memory.FrameSpan(reclaimed));
                    int bad = words.IndexOfAnyExcept(Marker);
                    if (bad >= 0)
                    {
                        s.StaleWrites++;
                        s.FirstViolation ??= $"round {r}: freed frame {reclaimed} overwritten at word {bad} with 0x{words[bad]:x} after the shootdown returned";
                    }

                    machine.Frames.Free(cpu.Id, reclaimed);
                }
            }
        }
        finally
        {
            Volatile.Write(ref s.Stop, 1);
        }
    }

    private static void Hammer(AddressSpace mm, Cpu cpu, Shared s, HammerMode mode, int seed)
    {
        var rng = new Random(seed ^ 0x5eed);
        long r = 0;
        while (true)
        {
            Spin.Until(cpu, () => Volatile.Read(ref s.Stop) != 0 || Volatile.Read(ref s.Mapped) > r, "the next round");
            if (Volatile.Read(ref s.Mapped) <= r)
            {
                return; // Stopped.
            }

            r = Volatile.Read(ref s.Mapped);
            ulong va = s.Va;
            bool hot = false;
            bool lazy = false;
            for (long i = 0; ; i++)
            {
                // Acquire: if the flag is up, the unmap (and its shootdown) returned before this access starts.
                bool after = Volatile.Read(ref s.Unmapped) == r;
                AccessResult result = (i & 1) == 0 ? mm.TryWrite(cpu, va, (ulong)r) : mm.TryRead(cpu, va, out ulong _);
                if (result == AccessResult.Ok)
                {
                    s.Hits++;
                    if (after)
                    {
                        Interlocked.Increment(ref s.LateAccesses);
                        s.FirstViolation ??= $"round {r}: access {i} at 0x{va:x} succeeded after the unmap returned";
                    }

                    if (!hot)
                    {
                        hot = true;
                        if (mode == HammerMode.PlantRunWhileLazy)
                        {
                            // Planted bug: "asleep" for the shootdown protocol but still running with a full TLB.
                            cpu.PrepareToBlock();
                            lazy = true;
                        }

                        Volatile.Write(ref s.Hot, r);
                    }
                }

                if (after && (i & 1) == 1)
                {
                    break; // Tried a write and a read after the flag.
                }

                if (mode == HammerMode.Napping && !lazy && rng.Next(64) == 0)
                {
                    // A legal nap: no access while lazy; the wake compares TLB generations and flushes if behind.
                    cpu.PrepareToBlock();
                    Thread.SpinWait(rng.Next(0, 64));
                    cpu.FinishBlock();
                }
            }

            if (lazy)
            {
                cpu.FinishBlock();
            }

            Volatile.Write(ref s.Done, r);
        }
    }

    /// <summary>What a run saw.</summary>
    public sealed record Report(long Rounds, long Reclaimed, long Hits, long LateAccesses, long StaleWrites, string? FirstViolation)
    {
        /// <summary>Accesses through a translation that the shootdown should have removed.</summary>
        public long Violations => LateAccesses + StaleWrites;
    }

    private sealed class Shared
    {
        public long Mapped;
        public long Hot;
        public long Unmapped;
        public long Done;
        public int Stop;
        public ulong Va;
        public long Rounds;
        public long Reclaimed;
        public long Hits;
        public long LateAccesses;
        public long StaleWrites;
        public string? FirstViolation;
    }
}
