using SpecVm.Memory;
using SpecVm.Paging;
using SpecVm.Smp;

namespace SpecVm.Mm;

/// <summary>
/// Checks the invariants a quiescent machine must satisfy: every frame accounted for, every present PTE inside a VMA
/// with permissions no wider than the VMA's, anonymous frames mapped exactly once, page-cache map counts matching the
/// PTEs, a sane VMA index, and no retired VMA read after its grace period.
/// </summary>
/// <remarks>
/// <para>
/// Call it only when no CPU runs in the address spaces checked (between test phases, after the workers have
/// returned): it walks page tables and reads frame metadata without locks, so a concurrent fault or unmap would
/// show up as a false violation (a frame in <see cref="FrameState.Preparing"/>, a PTL held).
/// </para>
/// <para>
/// The frame balance is machine-wide: the census of frame states is compared with what the given address spaces map
/// and the given files cache, so pass every live address space and every live file of the machine (a disposed file
/// that is still mapped is live: its page cache stays until the last mapping goes). The overloads
/// taking one <see cref="AddressSpace"/> assume it is the machine's only one.
/// </para>
/// <para>
/// Each method returns the violations it found as readable sentences (empty when all holds); <see cref="Check(AddressSpace, SimFile[])"/>
/// throws an <see cref="InvariantViolationException"/> listing all of them.
/// </para>
/// </remarks>
public static unsafe class InvariantChecker
{
    /// <summary>Violations reported per check before the rest are summarised (a broken run can have millions).</summary>
    private const int MaxReportsPerCheck = 20;

    /// <summary>Every violation of <paramref name="mm"/>, the machine's only address space, with these files.</summary>
    /// <param name="mm">The address space (the only live one on its machine).</param>
    /// <param name="files">Every live file on the machine.</param>
    public static IReadOnlyList<string> FindViolations(AddressSpace mm, params SimFile[] files)
    {
        ArgumentNullException.ThrowIfNull(mm);
        return FindViolations(mm.Machine, [mm], files);
    }

    /// <summary>Every violation on <paramref name="machine"/>, given all its live address spaces and files.</summary>
    /// <param name="machine">The machine.</param>
    /// <param name="spaces">Every live address space of the machine.</param>
    /// <param name="files">Every live file of the machine.</param>
    public static IReadOnlyList<string> FindViolations(Machine machine, IReadOnlyList<AddressSpace> spaces, IReadOnlyList<SimFile> files)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(spaces);
        ArgumentNullException.ThrowIfNull(files);
        var violations = new List<string>();
        foreach (AddressSpace mm in spaces)
        {
            violations.AddRange(CheckVmas(mm));
            violations.AddRange(CheckPtes(mm));
            violations.AddRange(CheckRetiredVmas(mm));
        }

        violations.AddRange(CheckFrames(machine, spaces, files));
        violations.AddRange(CheckTlbs(machine, spaces));
        return violations;
    }

    /// <summary>Throws <see cref="InvariantViolationException"/> if <see cref="FindViolations(AddressSpace, SimFile[])"/> finds anything.</summary>
    /// <param name="mm">The address space (the only live one on its machine).</param>
    /// <param name="files">Every live file on the machine.</param>
    public static void Check(AddressSpace mm, params SimFile[] files) => ThrowIfAny(FindViolations(mm, files));

    /// <summary>Throws <see cref="InvariantViolationException"/> if <see cref="FindViolations(Machine, IReadOnlyList{AddressSpace}, IReadOnlyList{SimFile})"/> finds anything.</summary>
    /// <param name="machine">The machine.</param>
    /// <param name="spaces">Every live address space of the machine.</param>
    /// <param name="files">Every live file of the machine.</param>
    public static void Check(Machine machine, IReadOnlyList<AddressSpace> spaces, IReadOnlyList<SimFile> files) =>
        ThrowIfAny(FindViolations(machine, spaces, files));

    /// <summary>The VMA index: sorted, non-overlapping, page aligned, in user space, attached, unpoisoned, sequence counts even.</summary>
    /// <param name="mm">The address space.</param>
    public static IReadOnlyList<string> CheckVmas(AddressSpace mm)
    {
        ArgumentNullException.ThrowIfNull(mm);
        var violations = new List<string>();
        ulong previousEnd = 0;
        foreach (Vma v in mm.Vmas.SnapshotLive())
        {
            if (v.IsPoisoned)
            {
                Add(violations, $"The VMA index holds a poisoned (freed) VMA.");
                continue;
            }

            if (v.IsDetached)
            {
                Add(violations, $"The VMA index holds a detached VMA: {v}.");
            }

            if (!ReferenceEquals(v.AddressSpace, mm))
            {
                Add(violations, $"{v} belongs to another address space.");
            }

            if ((v.Start & 0xFFF) != 0 || (v.End & 0xFFF) != 0 || v.Start >= v.End || v.Start < AddressSpace.MinAddress || v.End > PageTable.UserTop)
            {
                Add(violations, $"{v} has a bad range.");
            }

            if (v.Start < previousEnd)
            {
                Add(violations, $"{v} overlaps or is out of order with the VMA before it (which ends at 0x{previousEnd:x}).");
            }

            if ((v.Seq.Current & 1) != 0)
            {
                Add(violations, $"{v} has an odd sequence count {v.Seq.Current}: a writer left it open.");
            }

            if (v.Kind != MappingKind.Anonymous && (v.File == null || v.FilePageOffset < 0 || v.FilePageOf(v.End - 1) >= v.File.Pages))
            {
                Add(violations, $"{v} maps outside its file.");
            }

            previousEnd = Math.Max(previousEnd, v.End);
        }

        return violations;
    }

    /// <summary>
    /// Every present PTE lies inside a VMA, with the rights the VMA gives (writable only with
    /// <see cref="Protection.Write"/>, and in a private file mapping only for a private copy; user-accessible exactly when
    /// the protection is not <see cref="Protection.None"/>; no-execute exactly when it lacks
    /// <see cref="Protection.Execute"/>), and maps a frame of the right kind (anonymous frames for
    /// anonymous VMAs, the file's own page for shared ones, the machine's zero page only read-only in anonymous VMAs).
    /// </summary>
    /// <param name="mm">The address space.</param>
    public static IReadOnlyList<string> CheckPtes(AddressSpace mm)
    {
        ArgumentNullException.ThrowIfNull(mm);
        var violations = new List<string>();
        if (mm.PageTable.PageTableLock.IsLocked)
        {
            Add(violations, $"The mm's page_table_lock is held by owner {mm.PageTable.PageTableLock.Owner} while quiescent.");
        }

        PhysicalMemory memory = mm.Machine.Memory;
        IReadOnlyList<Vma> vmas = mm.Vmas.SnapshotLive();

        // Huge pages first (their subpages are checked below as the PTEs they stand for; a broken huge page would
        // otherwise be reported only as 512 subpage violations): one anonymous VMA covers the whole 2 MiB (a split was
        // not missed when a VMA edge moved into it), the frames form one intact huge page, and the PTE table deposited
        // for its split is a page table.
        mm.PageTable.ForEachHuge((va, pmd) =>
        {
            Vma? vma = FindIn(vmas, va);
            if (vma == null || vma.End - va < PageTable.PteTableSpan || vma.Kind != MappingKind.Anonymous)
            {
                Add(violations, $"Huge PMD at 0x{va:x} ({pmd}) is not inside one anonymous VMA ({vma?.ToString() ?? "none"}): a split was missed.");
            }

            long head = pmd.Pfn;
            if (head % PageTable.HugePages != 0 || head + PageTable.HugePages > memory.FrameCount)
            {
                Add(violations, $"Huge PMD at 0x{va:x} ({pmd}) maps frame {head}, which does not start a 2 MiB block.");
                return;
            }

            for (int i = 0; i < PageTable.HugePages; i++)
            {
                PageFrameFlags want = i == 0 ? PageFrameFlags.CompoundHead : PageFrameFlags.CompoundTail;
                if (((PageFrameFlags)memory.Frame(head + i).Flags & (PageFrameFlags.CompoundHead | PageFrameFlags.CompoundTail)) != want)
                {
                    Add(violations, $"Huge PMD at 0x{va:x} ({pmd}): frame {head + i} is not marked {want}: the huge page was split or freed under its PMD.");
                    break;
                }
            }

            long deposit = memory.Frame(head).Index;
            if ((ulong)deposit >= (ulong)memory.FrameCount || deposit == 0 || memory.Frame(deposit).ReadState() != FrameState.PageTable)
            {
                Add(violations, $"Huge PMD at 0x{va:x} ({pmd}): its deposited PTE table {deposit} is not a page table.");
            }
        });

        mm.PageTable.ForEachPresent((va, pte) =>
        {
            Vma? vma = FindIn(vmas, va);
            if (vma == null)
            {
                Add(violations, $"PTE at 0x{va:x} ({pte}) lies outside every VMA.");
                return;
            }

            if ((ulong)pte.Pfn >= (ulong)memory.FrameCount || pte.Pfn == 0)
            {
                Add(violations, $"PTE at 0x{va:x} ({pte}) maps a frame that does not exist.");
                return;
            }

            ref PageFrame frame = ref memory.Frame(pte.Pfn);
            FrameState state = frame.ReadState();
            Protection p = vma.Protection;
            if (pte.IsWritable && (p & Protection.Write) == 0)
            {
                Add(violations, $"PTE at 0x{va:x} ({pte}) is writable but {vma} does not allow writes.");
            }

            if (pte.IsUser && p == Protection.None)
            {
                Add(violations, $"PTE at 0x{va:x} ({pte}) is user-accessible but {vma} is PROT_NONE.");
            }

            if (!pte.IsUser && p != Protection.None)
            {
                // Every right implies readable (x86: write and execute both imply read), so a page of an accessible
                // VMA whose PTE is not user-accessible faults where a never-touched page of the same VMA would not.
                Add(violations, $"PTE at 0x{va:x} ({pte}) is not user-accessible but {vma} allows access: its rights differ from the VMA's.");
            }

            if (p != Protection.None && ((pte.Value & Pte.NoExecute) == 0) != ((p & Protection.Execute) != 0))
            {
                Add(violations, $"PTE at 0x{va:x} ({pte}) has the no-execute bit {((pte.Value & Pte.NoExecute) != 0 ? "set" : "clear")} but {vma} is {p}: its rights differ from the VMA's.");
            }

            switch (state)
            {
                case FrameState.Anonymous:
                    if (vma.Kind == MappingKind.SharedFile)
                    {
                        Add(violations, $"PTE at 0x{va:x} ({pte}) maps an anonymous frame in shared file {vma}.");
                    }

                    break;
                case FrameState.PageCache:
                    if (vma.Kind == MappingKind.Anonymous)
                    {
                        Add(violations, $"PTE at 0x{va:x} ({pte}) maps a page-cache frame in anonymous {vma}.");
                    }
                    else if (frame.Owner != vma.File!.Id || frame.Index != vma.FilePageOf(va))
                    {
                        Add(violations, $"PTE at 0x{va:x} ({pte}) maps page {frame.Index} of file {frame.Owner}, but {vma} maps page {vma.FilePageOf(va)} of file {vma.File.Id} there.");
                    }
                    else if (pte.IsWritable && vma.Kind == MappingKind.PrivateFile)
                    {
                        Add(violations, $"PTE at 0x{va:x} ({pte}) maps the page-cache page writable in private {vma}: writes would reach the file.");
                    }

                    break;
                case FrameState.ZeroPage:
                    if (pte.Pfn != mm.Machine.ZeroPfn)
                    {
                        Add(violations, $"PTE at 0x{va:x} ({pte}) maps frame {pte.Pfn} in the zero-page state, but the machine's zero page is frame {mm.Machine.ZeroPfn}.");
                    }

                    if (pte.IsWritable)
                    {
                        Add(violations, $"PTE at 0x{va:x} ({pte}) maps the shared zero page writable: a write would reach every zero-page mapping.");
                    }

                    if (vma.Kind != MappingKind.Anonymous)
                    {
                        Add(violations, $"PTE at 0x{va:x} ({pte}) maps the zero page in file-backed {vma}.");
                    }

                    break;
                default:
                    Add(violations, $"PTE at 0x{va:x} ({pte}) maps a frame in state {state} (use after free or a half-made fault).");
                    break;
            }
        });

        return violations;
    }

    /// <summary>
    /// No TLB holds a translation that a shootdown should have removed: for every CPU that has one of
    /// <paramref name="spaces"/> loaded and has flushed up to its current TLB generation (a lazy CPU behind it flushes
    /// when it wakes), every cached translation of that address space maps a frame that is not free, and the same frame
    /// the page table maps there now (a translation may be narrower than the PTE, after a widening needs no shootdown,
    /// never to another frame).
    /// </summary>
    /// <param name="machine">The machine.</param>
    /// <param name="spaces">The address spaces whose translations to check.</param>
    /// <remarks>
    /// The first check holds at any moment, even in the middle of an unmap (frames are freed only after the shootdown);
    /// the second only when the machine is quiescent. Each violation says which it is ("freed" or "stale").
    /// </remarks>
    public static IReadOnlyList<string> CheckTlbs(Machine machine, IReadOnlyList<AddressSpace> spaces)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(spaces);
        var violations = new List<string>();
        PhysicalMemory memory = machine.Memory;
        foreach (Cpu cpu in machine.Cpus)
        {
            TlbContext? loaded = cpu.Loaded;
            AddressSpace? mm = null;
            foreach (AddressSpace candidate in spaces)
            {
                mm = ReferenceEquals(candidate.TlbContext, loaded) ? candidate : mm;
            }

            if (mm == null || cpu.LoadedGeneration != mm.TlbContext.Generation)
            {
                continue;
            }

            cpu.Tlb.ForEachValid(mm.TlbContext.Id, (vpn, cached) =>
            {
                var pte = new Pte(cached);
                ulong va = vpn << PhysicalMemory.PageShift;
                if ((ulong)pte.Pfn >= (ulong)memory.FrameCount)
                {
                    Add(violations, $"CPU {cpu.Id}'s TLB maps 0x{va:x} to frame {pte.Pfn}, which does not exist.");
                    return;
                }

                if (memory.Frame(pte.Pfn).ReadState() == FrameState.Free)
                {
                    Add(violations, $"CPU {cpu.Id}'s TLB maps 0x{va:x} to frame {pte.Pfn}, which was freed: the frame was freed before the shootdown that removes the translation.");
                    return;
                }

                ulong* leaf = mm.PageTable.WalkLocklessLeaf(va, out _, out bool huge);
                ulong now = leaf == null ? 0 : Volatile.Read(ref *leaf);
                if (huge && (now & Pte.Huge) != 0)
                {
                    now = PageTable.Subpage(now, vpn & (PageTable.HugePages - 1));
                }

                if ((now & Pte.Present) == 0 || new Pte(now).Pfn != pte.Pfn)
                {
                    Add(violations, $"CPU {cpu.Id}'s TLB maps 0x{va:x} to frame {pte.Pfn}, but the page table maps {new Pte(now)} there: a stale translation survived its shootdown.");
                }
            });
        }

        return violations;
    }

    /// <summary>No retired VMA was read after its grace period (<see cref="VmaSlab.PoisonedReads"/> is zero).</summary>
    /// <param name="mm">The address space.</param>
    public static IReadOnlyList<string> CheckRetiredVmas(AddressSpace mm)
    {
        ArgumentNullException.ThrowIfNull(mm);
        long reads = mm.Slab.PoisonedReads;
        return reads == 0
            ? []
            : [$"{reads} read(s) of a retired VMA after it went back to the slab: a lockless reader outlived the grace period."];
    }

    /// <summary>
    /// Frames balance: the census adds up, none awaits a flush or is half prepared, the free count matches the
    /// allocator's lists, the machine's zero page is the one frame in its state with map count 0 (its mappings are not
    /// counted), page tables match what the address spaces own, every anonymous frame is mapped by exactly one
    /// PTE with map count 1, every page-cache frame's map count matches its PTEs, and the files cache every page-cache frame.
    /// </summary>
    /// <param name="machine">The machine.</param>
    /// <param name="spaces">Every live address space of the machine.</param>
    /// <param name="files">Every live file of the machine.</param>
    public static IReadOnlyList<string> CheckFrames(Machine machine, IReadOnlyList<AddressSpace> spaces, IReadOnlyList<SimFile> files)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(spaces);
        ArgumentNullException.ThrowIfNull(files);
        var violations = new List<string>();
        PhysicalMemory memory = machine.Memory;
        FrameCensus census = memory.Census();
        if (census.Total != memory.FrameCount)
        {
            Add(violations, $"The census counts {census.Total} frames, but memory has {memory.FrameCount} ({census}).");
        }

        if (census.AwaitingFlush != 0)
        {
            Add(violations, $"{census.AwaitingFlush} frame(s) still await a TLB flush while quiescent ({census}).");
        }

        if (census.Preparing != 0)
        {
            Add(violations, $"{census.Preparing} frame(s) are still being prepared while quiescent: a fault lost them ({census}).");
        }

        long listed = machine.Frames.FreeFrames;
        if (census.Free != listed)
        {
            Add(violations, $"{census.Free} frames are marked free but the allocator lists {listed} ({census}).");
        }

        // Frame 0 is reserved and carries the page-table state; each address space owns its table pages.
        long tables = 1;
        foreach (AddressSpace mm in spaces)
        {
            tables += mm.PageTable.TablePages;
        }

        if (census.PageTables != tables)
        {
            Add(violations, $"{census.PageTables} frames are page tables, but the address spaces own {tables - 1} (+1 reserved): {(census.PageTables > tables ? "a table leaked" : "a table was freed and is still counted")}.");
        }

        // The shared zero page: exactly one frame, the machine's, allocated with it and never freed.
        if (census.ZeroPage != 1)
        {
            Add(violations, $"{census.ZeroPage} frames are in the zero-page state; the machine has exactly one zero page ({census}).");
        }

        long cached = 0;
        foreach (SimFile f in files)
        {
            cached += f.CachedPages;
        }

        if (census.PageCache != cached)
        {
            Add(violations, $"{census.PageCache} frames are page cache, but the files cache {cached}.");
        }

        // How many PTEs map each frame (a huge page's subpages count as the PTEs they stand for), and which frames
        // are mapped by a huge PMD.
        var mappers = new Dictionary<long, int>();
        var hugeMapped = new HashSet<long>();
        foreach (AddressSpace mm in spaces)
        {
            mm.PageTable.ForEachPresent((_, pte) => mappers[pte.Pfn] = mappers.GetValueOrDefault(pte.Pfn) + 1);
            mm.PageTable.ForEachHuge((_, pmd) =>
            {
                for (int i = 0; i < PageTable.HugePages; i++)
                {
                    hugeMapped.Add(pmd.Pfn + i);
                }
            });
        }

        for (long pfn = 1; pfn < memory.FrameCount; pfn++)
        {
            ref PageFrame frame = ref memory.Frame(pfn);
            int ptes = mappers.GetValueOrDefault(pfn);
            if ((frame.Flags & (int)(PageFrameFlags.CompoundHead | PageFrameFlags.CompoundTail)) != 0 && !hugeMapped.Contains(pfn))
            {
                Add(violations, $"Frame {pfn} ({frame.ReadState()}) is part of a huge page that no huge PMD maps: a split that did not make it 4 KiB frames, or a huge page lost.");
            }

            switch (frame.ReadState())
            {
                case FrameState.Anonymous:
                    if (ptes != 1 || frame.MapCount != 1)
                    {
                        Add(violations, ptes == 0
                            ? $"Anonymous frame {pfn} is mapped by no PTE (map count {frame.MapCount}): it leaked."
                            : $"Anonymous frame {pfn} is mapped by {ptes} PTE(s) with map count {frame.MapCount}; both must be 1.");
                    }

                    break;
                case FrameState.PageCache:
                    if (frame.MapCount != ptes)
                    {
                        Add(violations, $"Page-cache frame {pfn} (file {frame.Owner} page {frame.Index}) has map count {frame.MapCount} but {ptes} PTE(s) map it.");
                    }

                    break;
                case FrameState.ZeroPage:
                    if (pfn != machine.ZeroPfn)
                    {
                        Add(violations, $"Frame {pfn} is in the zero-page state, but the machine's zero page is frame {machine.ZeroPfn}.");
                    }
                    else if (frame.MapCount != 0)
                    {
                        Add(violations, $"The zero page has map count {frame.MapCount}; its mappings ({ptes} PTE(s)) are never counted.");
                    }

                    break;
                case FrameState.PageTable:
                    if (frame.Ptl.IsLocked)
                    {
                        Add(violations, $"The PTL of page-table frame {pfn} is held by CPU {frame.Ptl.Owner} while quiescent.");
                    }

                    break;
            }
        }

        return violations;
    }

    private static Vma? FindIn(IReadOnlyList<Vma> vmas, ulong va)
    {
        int lo = 0;
        int hi = vmas.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            Vma v = vmas[mid];
            if (v.IsPoisoned || v.Start <= va)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        Vma? found = lo > 0 ? vmas[lo - 1] : null;
        return found != null && !found.IsPoisoned && va < found.End ? found : null;
    }

    private static void Add(List<string> violations, string violation)
    {
        if (violations.Count < MaxReportsPerCheck)
        {
            violations.Add(violation);
        }
        else if (violations.Count == MaxReportsPerCheck)
        {
            violations.Add("... and more (only the first few are listed).");
        }
    }

    private static void ThrowIfAny(IReadOnlyList<string> violations)
    {
        if (violations.Count > 0)
        {
            throw new InvariantViolationException(violations);
        }
    }
}

/// <summary>The machine broke an invariant (thrown by <see cref="InvariantChecker.Check(AddressSpace, SimFile[])"/>).</summary>
public sealed class InvariantViolationException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="violations">What was found, one sentence each.</param>
    public InvariantViolationException(IReadOnlyList<string> violations)
        : base($"{violations.Count} invariant violation(s):{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", violations)) =>
        Violations = violations;

    /// <summary>The violations, one sentence each.</summary>
    public IReadOnlyList<string> Violations { get; }
}
