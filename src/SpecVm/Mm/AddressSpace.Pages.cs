using System.Runtime.CompilerServices;
using SpecVm.Memory;
using SpecVm.Paging;
using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Mm;

/// <summary>The page side of an address space: the MMU access path, zapping and protection changes.</summary>
public sealed unsafe partial class AddressSpace
{
    /// <summary>Faults one access may take before SpecVm calls it a livelock (a bug, never expected).</summary>
    private const int MaxFaultsPerAccess = 1_000_000;

    /// <summary>Reads a <typeparamref name="T"/> at <paramref name="address"/> through the MMU.</summary>
    /// <typeparam name="T">An unmanaged type that does not cross a page boundary at this address.</typeparam>
    /// <param name="cpu">The CPU doing the access (from its own thread).</param>
    /// <param name="address">The virtual address.</param>
    /// <param name="value">The value read, or default.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessResult TryRead<T>(Cpu cpu, ulong address, out T value)
        where T : unmanaged
    {
        CheckSpan(address, sizeof(T));
        AccessResult r = Translate(cpu, address, false, out byte* p);
        value = r == AccessResult.Ok ? Unsafe.ReadUnaligned<T>(p) : default;
        return r;
    }

    /// <summary>Writes a <typeparamref name="T"/> at <paramref name="address"/> through the MMU.</summary>
    /// <typeparam name="T">An unmanaged type that does not cross a page boundary at this address.</typeparam>
    /// <param name="cpu">The CPU doing the access (from its own thread).</param>
    /// <param name="address">The virtual address.</param>
    /// <param name="value">The value.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessResult TryWrite<T>(Cpu cpu, ulong address, T value)
        where T : unmanaged
    {
        CheckSpan(address, sizeof(T));
        AccessResult r = Translate(cpu, address, true, out byte* p);
        if (r == AccessResult.Ok)
        {
            Unsafe.WriteUnaligned(p, value);
        }

        return r;
    }

    /// <summary>Reads a value, throwing <see cref="SegmentationFaultException"/> on a bad access.</summary>
    /// <typeparam name="T">An unmanaged type.</typeparam>
    /// <param name="cpu">The CPU.</param>
    /// <param name="address">The address.</param>
    public T Read<T>(Cpu cpu, ulong address)
        where T : unmanaged
    {
        AccessResult r = TryRead(cpu, address, out T value);
        return r == AccessResult.Ok ? value : throw new SegmentationFaultException(address, false, r);
    }

    /// <summary>Writes a value, throwing <see cref="SegmentationFaultException"/> on a bad access.</summary>
    /// <typeparam name="T">An unmanaged type.</typeparam>
    /// <param name="cpu">The CPU.</param>
    /// <param name="address">The address.</param>
    /// <param name="value">The value.</param>
    public void Write<T>(Cpu cpu, ulong address, T value)
        where T : unmanaged
    {
        AccessResult r = TryWrite(cpu, address, value);
        if (r != AccessResult.Ok)
        {
            throw new SegmentationFaultException(address, true, r);
        }
    }

    /// <summary>Copies <paramref name="data"/> to <paramref name="address"/> page by page through the MMU.</summary>
    /// <param name="cpu">The CPU.</param>
    /// <param name="address">The start address.</param>
    /// <param name="data">The bytes.</param>
    public AccessResult TryWriteBytes(Cpu cpu, ulong address, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            int n = (int)Math.Min((ulong)data.Length, PhysicalMemory.PageSize - (address & PageMask));
            AccessResult r = Translate(cpu, address, true, out byte* p);
            if (r != AccessResult.Ok)
            {
                return r;
            }

            data[..n].CopyTo(new Span<byte>(p, n));
            data = data[n..];
            address += (ulong)n;
        }

        return AccessResult.Ok;
    }

    /// <summary>Copies bytes at <paramref name="address"/> into <paramref name="into"/> page by page through the MMU.</summary>
    /// <param name="cpu">The CPU.</param>
    /// <param name="address">The start address.</param>
    /// <param name="into">Where to put them.</param>
    public AccessResult TryReadBytes(Cpu cpu, ulong address, Span<byte> into)
    {
        while (!into.IsEmpty)
        {
            int n = (int)Math.Min((ulong)into.Length, PhysicalMemory.PageSize - (address & PageMask));
            AccessResult r = Translate(cpu, address, false, out byte* p);
            if (r != AccessResult.Ok)
            {
                return r;
            }

            new ReadOnlySpan<byte>(p, n).CopyTo(into);
            into = into[n..];
            address += (ulong)n;
        }

        return AccessResult.Ok;
    }

    /// <summary>
    /// The MMU: an interrupt point, then TLB → lockless walk → page fault → retry. On success <paramref name="p"/>
    /// points at the byte in the frame. Between the translation and the caller's load or store there is no
    /// interrupt point, so the access completes before this CPU can acknowledge a shootdown of the page (as an
    /// instruction completes before an interrupt is taken).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private AccessResult Translate(Cpu cpu, ulong address, bool write, out byte* p)
    {
        cpu.Poll();

        // The misuse checks, two compares on lines this access reads anyway: the caller runs as this CPU (a local's
        // address inside the stack bound to the CPU; the thread-static only when not), and the CPU has this live
        // address space loaded (if not — first use, another machine's
        // CPU, or this address space disposed — the slow path sorts it out or throws).
        Unsafe.SkipInit(out byte onStack); // Only its address is used.
        if (!cpu.RunsOnBoundStack(&onStack))
        {
            ThrowNotOnCpuThread(cpu);
        }

        TlbContext context = _accessContext;
        if (!ReferenceEquals(cpu.Loaded, context))
        {
            EnterSlow(cpu);
        }

        // The loaded context is this live address space's (the dead one never loads): its id tags our translations.
        ulong vpn = address >> PhysicalMemory.PageShift;
        ulong tag = Tlb.MakeTag(context.Id, vpn);

        // A non-canonical address has page-number bits above bit 35, which overlap the context id in the tag: without
        // the range check, va | (id << 48) would hit the translation of va. Such addresses go to the slow path (#GP).
        if (PageTable.IsUserAddress(address) && cpu.Tlb.TryLookup(tag, vpn, out ulong pte) && Permits(pte, write))
        {
            cpu.Count(CpuCounter.TlbHits);
            p = _memory.FrameDataUnchecked(new Pte(pte).Pfn) + (address & PageMask);
            return AccessResult.Ok;
        }

        // Through a separate local: handing `p` itself to the non-inlined slow path would take its address and keep
        // it in a stack slot on the hit path too (a store and a reload before every simulated access).
        AccessResult slow = TranslateSlow(cpu, address, write, tag, vpn, out byte* slowP);
        p = slowP;
        return slow;
    }

    /// <summary>The first access of a CPU here (or after it ran elsewhere): checks it may, then loads the context.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterSlow(Cpu cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        if (!ReferenceEquals(cpu.Machine, _machine))
        {
            throw new ArgumentException($"CPU {cpu.Id} belongs to another machine: its TLB is not kept coherent by this machine's shootdowns.", nameof(cpu));
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        cpu.SwitchTo(_tlb);

        // Acquire read after SwitchTo's full fence (joining the CPU mask), the other half of the Dekker pair with
        // Dispose: either Dispose sees us in the mask and waits for us, or we see its flag and leave now.
        if (Volatile.Read(ref _disposed) != 0)
        {
            cpu.SwitchToNone();
            throw new ObjectDisposedException(nameof(AddressSpace));
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private AccessResult TranslateSlow(Cpu cpu, ulong address, bool write, ulong tag, ulong vpn, out byte* p)
    {
        p = null;
        cpu.Count(CpuCounter.TlbMisses);
        if (!PageTable.IsUserAddress(address))
        {
            return AccessResult.SegmentationFault; // Non-canonical or kernel address: #GP, then SIGSEGV.
        }

        for (int faults = 0; ; faults++)
        {
            ulong* entry = _pageTable.WalkLocklessLeaf(address, out long tablePfn, out bool huge);
            if (entry != null)
            {
                if (_targeted)
                {
                    NoteTlbUser(cpu, tablePfn);
                }

                // Acquire: the frame's contents (zeroed or copied before the PTE was installed) are visible.
                ulong pte = Volatile.Read(ref *entry);
                if (huge)
                {
                    if ((pte & Pte.Huge) == 0)
                    {
                        continue; // Split or zapped since the walk (its PMD now points at a table, or at nothing): walk again.
                    }

                    // A 2 MiB page: the TLB caches the 4 KiB translation of this subpage (base frame + index), as the
                    // model's TLB is per 4 KiB; a shootdown of any part of the huge range removes it.
                    pte = PageTable.Subpage(pte, vpn & (PageTable.HugePages - 1));
                }

                if (Permits(pte, write))
                {
                    cpu.Tlb.Fill(tag, vpn, pte);
                    cpu.Count(CpuCounter.TlbFills);
                    p = _memory.FrameDataUnchecked(new Pte(pte).Pfn) + (address & PageMask);
                    return AccessResult.Ok;
                }
            }

            if (faults >= MaxFaultsPerAccess)
            {
                throw new InvalidOperationException($"Livelock: {faults} faults at 0x{address:x} without progress ({_strategy.Name}).");
            }

            cpu.Count(CpuCounter.Faults);
            FaultResult result = _strategy.HandleFault(cpu, this, address, write);
            switch (result)
            {
                case FaultResult.SegmentationFault:
                    cpu.Count(CpuCounter.FaultSegv);
                    return AccessResult.SegmentationFault;
                case FaultResult.OutOfMemory:
                    cpu.Count(CpuCounter.FaultOom);
                    return AccessResult.OutOfMemory;
                default:
                    continue; // Handled or Retry: walk again.
            }
        }
    }

    /// <summary>Targeted shootdowns: records, before the PTE is read, that <paramref name="cpu"/> caches translations from this PTE table.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void NoteTlbUser(Cpu cpu, long ptePfn)
    {
        ref PageFrame table = ref _memory.FrameUnchecked(ptePfn);
        ulong bit = 1UL << cpu.Id;

        // Acquire read: our own bit, once set with the Or below, stays set while the table lives.
        if ((Volatile.Read(ref table.TlbCpus) & bit) == 0)
        {
            // Or (full fence), one half of a Dekker pair with TargetsFor: our bit is visible before we read the PTE
            // that we cache. An initiator clears the PTE, fences, then reads the bits: either it sees ours and
            // interrupts us, or we read its cleared PTE. Reading the PTE first would let a translation the
            // initiator did not know about survive its shootdown.
            Interlocked.Or(ref table.TlbCpus, bit);
        }
    }

    /// <summary>
    /// Shoots down [start, end): every awake CPU of the address space, or with targeted shootdowns and no page table
    /// freed, only the CPUs that PTE tables of the range served translations to.
    /// </summary>
    internal void FlushTlbRange(Cpu cpu, ulong start, ulong end, bool tablesFreed)
    {
        ulong mayCache = PlantTargetNoCpus ? 0 // Planted bug for tests: interrupt nobody.
            : _targeted && !tablesFreed ? TargetsFor(start, end)
            : ulong.MaxValue;
        cpu.Shootdown(_tlb, start, end, mayCache);
    }

    /// <summary>The CPUs that PTE tables of [start, end) served translations to (all CPUs for a range too large to walk).</summary>
    private ulong TargetsFor(ulong start, ulong end)
    {
        // Above this many PTE tables, walking them costs more than interrupting everyone (a 1 GiB range).
        const ulong MaxTablesWalked = 512;
        if (end - start > MaxTablesWalked * PageTable.PteTableSpan)
        {
            return ulong.MaxValue;
        }

        // Full fence, the other half of the Dekker pair with NoteTlbUser: the PTEs we cleared or narrowed are visible
        // before we read which CPUs may cache them.
        Interlocked.MemoryBarrier();
        ulong cpus = 0;
        for (ulong region = start & ~(PageTable.PteTableSpan - 1); region < end; region += PageTable.PteTableSpan)
        {
            // The PTE table, or for a huge page the PMD table whose entry served the translations.
            if (_pageTable.WalkLocklessLeaf(region, out long tablePfn, out _) != null)
            {
                // Acquire read of the CPUs' bits (see NoteTlbUser).
                cpus |= Volatile.Read(ref _memory.FrameUnchecked(tablePfn).TlbCpus);
            }
        }

        return cpus;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Permits(ulong pte, bool write)
    {
        ulong need = write ? Pte.Present | Pte.User | Pte.Writable : Pte.Present | Pte.User;
        return (pte & need) == need;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CheckSpan(ulong address, int size)
    {
        if ((address & PageMask) + (ulong)size > PhysicalMemory.PageSize)
        {
            ThrowCrossesPage(address, size);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowCrossesPage(ulong address, int size) =>
        throw new ArgumentException($"A {size}-byte access at 0x{address:x} crosses a page boundary; use TryReadBytes/TryWriteBytes.", nameof(address));

    /// <summary>
    /// Clears the PTEs of [start, end) under each table's PTL (Linux <c>zap_pte_range</c>). Anonymous frames go to this
    /// CPU's gather, state <see cref="FrameState.AwaitingFlush"/>; page-cache frames just lose a mapping; the zero page
    /// is left alone (never counted, never freed). Returns how
    /// many gathered frames still await a flush. When the gather fills, or a PTE table had dirty shared-file pages, the
    /// TLB is flushed <em>while the PTL is held</em> and the gathered frames are freed after it is dropped, as Linux does.
    /// </summary>
    private int Zap(Cpu cpu, ulong start, ulong end, out bool zapped)
    {
        int n = 0;
        zapped = false;
        ZapRange(cpu, start, end, start, end, ref n, ref zapped);
        return n;
    }

    /// <summary>
    /// Zaps [start, end) into this CPU's gather, which already holds <paramref name="n"/> frames; a forced flush covers
    /// [<paramref name="flushStart"/>, <paramref name="flushEnd"/>), the whole operation's range, since the gather may
    /// hold frames of earlier ranges. <paramref name="unflushed"/> says whether zapped PTEs still await a flush.
    /// </summary>
    /// <remarks>
    /// Linux's two forced flushes (mm/memory.c <c>zap_pte_range</c>): a full batch (<c>force_break</c>: flush, free,
    /// and come back for the rest of the table) and a dirty page-cache page (<c>delay_rmap</c>: the TLB must be
    /// flushed before the PTL is dropped, so that no CPU can still write the page through a stale translation once
    /// writeback may see it clean) — one shootdown per PTE table holding dirty shared-file pages, ~64 per 128 MiB for
    /// will-it-scale's page_fault3. Both flush under the PTL; the frames are freed after unlocking.
    /// </remarks>
    private void ZapRange(Cpu cpu, ulong start, ulong end, ulong flushStart, ulong flushEnd, ref int n, ref bool unflushed)
    {
        long[] gather = _gathers[cpu.Id] ??= new long[_options.ZapBatchPages];
        for (ulong region = start & ~(PageTable.PteTableSpan - 1); region < end; region += PageTable.PteTableSpan)
        {
            ulong from = Math.Max(start, region);
            ulong to = Math.Min(end, region + PageTable.PteTableSpan);

            // A huge page here: zapped whole if the range covers it, split first if not (then its PTEs are zapped below).
            long pmdTablePfn = -1;
            ulong* pmd = _thp ? HugeEntryFor(cpu, region, from, to, out pmdTablePfn) : null;
            if (pmd != null && ZapHuge(cpu, pmd, pmdTablePfn, gather, flushStart, flushEnd, ref n, ref unflushed))
            {
                continue;
            }

            while (from < to)
            {
                ulong* entry = _pageTable.WalkLockless(from, out long ptePfn);
                if (entry == null)
                {
                    break; // No PTE table here: nothing mapped in this 2 MiB.
                }

                ref PageFrame table = ref _memory.Frame(ptePfn);
                bool forceFlush = false;
                ulong va = from;
                cpu.SetSpinTarget("PTL of PTE table", ptePfn);
                cpu.LockPtl(ref table.Ptl);
                try
                {
                    for (; va < to; va += PhysicalMemory.PageSize, entry++)
                    {
                        ulong old = *entry;
                        if ((old & Pte.Present) == 0)
                        {
                            continue;
                        }

                        // Release store under the PTL: walkers that read the entry after this see it gone; those that
                        // read it before may still use it until the shootdown, which is why the frame waits for it.
                        VirtualTime.Work(SimWork.PageZap);
                        Volatile.Write(ref *entry, 0UL);
                        unflushed = true;
                        long pfn = new Pte(old).Pfn;
                        ref PageFrame frame = ref _memory.Frame(pfn);
                        FrameState state = frame.ReadState();
                        if (state == FrameState.ZeroPage)
                        {
                            // The shared zero page (a special PTE: vm_normal_page returns NULL for it in
                            // zap_pte_range): nothing to gather, count or free; the cleared PTE still needs the flush.
                            continue;
                        }

                        if (state == FrameState.Anonymous)
                        {
                            frame.MapCount = 0;
                            frame.WriteState(FrameState.AwaitingFlush);
                            gather[n++] = pfn;
                            if (n == gather.Length)
                            {
                                forceFlush = true; // The batch is full (force_break): flush, free, come back.
                                va += PhysicalMemory.PageSize;
                                break;
                            }
                        }
                        else
                        {
                            // A dirty page-cache page (delay_rmap): flush before this PTL is dropped.
                            forceFlush |= (old & Pte.Dirty) != 0;

                            // Atomic: a page-cache page's map count is shared with other address spaces (other PTLs).
                            Interlocked.Decrement(ref frame.MapCount);
                        }
                    }

                    if (forceFlush)
                    {
                        FlushTlbRange(cpu, flushStart, flushEnd, tablesFreed: false);
                        unflushed = false;
                    }
                }
                finally
                {
                    table.Ptl.Unlock(cpu.Id);
                }

                if (forceFlush)
                {
                    // After the unlock, as Linux's tlb_flush_mmu: the flush above made the gathered frames unreachable.
                    FreeGathered(cpu, n);
                    n = 0;
                }

                from = va;
            }
        }
    }

    /// <summary>
    /// Frees the gathered anonymous frames after the shootdown and after the PTL is dropped (Linux <c>tlb_flush_mmu</c> →
    /// <c>folios_put_refs</c>): off the LRU a folio batch per lock acquisition, uncharged from the memory cgroup in one
    /// walk (<c>uncharge_batch</c>), back to the allocator.
    /// </summary>
    private void FreeGathered(Cpu cpu, int count)
    {
        if (count == 0)
        {
            return;
        }

        long[]? gather = _gathers[cpu.Id];
        LruVec lru = _machine.Lru;

        // Linux's unmap_region starts with lru_add_drain(): this CPU's new pages go onto the list first, so that its
        // own pages leave the list below rather than being freed from its batch.
        lru.DrainAdds(cpu.Id);
        long pages = 0;
        for (int i = 0; i < count; i++)
        {
            // A huge page is one entry, its head (read before the release frees it): 512 pages to uncharge.
            long pfn = gather![i];
            pages += (_memory.FrameUnchecked(pfn).Flags & (int)PageFrameFlags.CompoundHead) != 0 ? PageTable.HugePages : 1;
            lru.Release(cpu.Id, pfn);
        }

        lru.FinishRelease(cpu.Id);
        _machine.Memcg.Uncharge(cpu.Id, pages);
    }

    /// <summary>
    /// Rewrites the present PTEs of [<paramref name="start"/>, <paramref name="end"/>) in <paramref name="vma"/> for its
    /// protection; true if any permission narrowed.
    /// </summary>
    private bool ChangePtes(Cpu cpu, Vma vma, ulong start, ulong end)
    {
        bool narrowed = false;
        for (ulong region = start & ~(PageTable.PteTableSpan - 1); region < end; region += PageTable.PteTableSpan)
        {
            ulong from = Math.Max(start, region);
            ulong to = Math.Min(end, region + PageTable.PteTableSpan);

            // A huge page here: changed whole if the range covers it, split first if not (then its PTEs change below).
            long pmdTablePfn = -1;
            ulong* pmd = _thp ? HugeEntryFor(cpu, region, from, to, out pmdTablePfn) : null;
            if (pmd != null && ChangeHuge(cpu, vma, pmd, pmdTablePfn) is bool hugeNarrowed)
            {
                narrowed |= hugeNarrowed;
                continue;
            }

            ulong* entry = _pageTable.WalkLockless(from, out long ptePfn);
            if (entry == null)
            {
                continue;
            }

            ref PageFrame table = ref _memory.Frame(ptePfn);
            cpu.LockPtl(ref table.Ptl);
            try
            {
                for (ulong va = from; va < to; va += PhysicalMemory.PageSize, entry++)
                {
                    ulong old = *entry;
                    if ((old & Pte.Present) == 0)
                    {
                        continue;
                    }

                    FrameState state = _memory.Frame(new Pte(old).Pfn).ReadState();
                    ulong updated = PteRights.For(vma, state) | (old & Pte.PfnMask) | Pte.Present | (old & (Pte.Accessed | Pte.Dirty));
                    if (state == FrameState.PageCache && (old & Pte.Dirty) == 0)
                    {
                        updated &= ~Pte.Writable; // A clean shared page stays write-protected (write-notify), as Linux's mprotect.
                    }
                    if (updated != old)
                    {
                        narrowed |= (old & ~updated & (Pte.Writable | Pte.User)) != 0;

                        // Release store under the PTL (see Zap).
                        Volatile.Write(ref *entry, updated);
                    }
                }
            }
            finally
            {
                table.Ptl.Unlock(cpu.Id);
            }
        }

        return narrowed;
    }
}
