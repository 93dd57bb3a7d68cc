using SpecVm.Memory;
using SpecVm.Smp;

namespace SpecVm.Mm;

// AddressSpace, by operation: mmap: placement, merging with neighbours, and finding a gap.
public sealed unsafe partial class AddressSpace
{
    /// <summary>
    /// Maps <paramref name="length"/> bytes (<c>mmap</c>) and returns the start address. Adjacent anonymous mappings
    /// with the same protection merge into one VMA, as Linux's <c>vma_merge</c> does.
    /// </summary>
    /// <param name="cpu">The CPU doing the call.</param>
    /// <param name="length">Bytes: positive, a multiple of 4096.</param>
    /// <param name="protection">The protection.</param>
    /// <param name="kind">The backing.</param>
    /// <param name="file">The file, for file mappings.</param>
    /// <param name="fileOffset">Byte offset in the file, page aligned.</param>
    /// <param name="fixedAddress">Map exactly here (refusing overlap, like <c>MAP_FIXED_NOREPLACE</c>); null to let SpecVm choose.</param>
    public ulong Map(Cpu cpu, ulong length, Protection protection, MappingKind kind = MappingKind.Anonymous, SimFile? file = null, long fileOffset = 0, ulong? fixedAddress = null)
    {
        CheckSyscall(cpu);
        CheckLength(length);
        CheckProtection(protection);
        CheckBacking(length, protection, kind, file, fileOffset);
        if (fixedAddress is ulong fixedStart)
        {
            CheckRange(fixedStart, length, nameof(fixedAddress));
        }

        // The file counts this mapping from here on (it refuses to be disposed while mapped); undone if Map fails.
        if (file != null && !file.TryAddMapping())
        {
            throw new ObjectDisposedException(nameof(SimFile), $"File {file.Id} was disposed; it cannot be mapped.");
        }

        bool published = false;
        WriteLock(cpu);
        try
        {
            ulong start;
            if (fixedAddress is ulong f)
            {
                Vma? clash = _index.FirstOverlap(f, f + length);
                if (clash != null)
                {
                    throw new ArgumentException($"Fixed mapping [0x{f:x}, 0x{f + length:x}) overlaps an existing mapping {clash}.", nameof(fixedAddress));
                }

                start = f;
            }
            else
            {
                // With huge pages on, an anonymous mapping of whole 2 MiB units starts on a 2 MiB boundary, so that
                // each of its units can be one huge page (Linux 6.7+ thp_get_unmapped_area for anonymous mappings,
                // "mm: align larger anonymous mappings on THP boundaries"; IS_ALIGNED(len, PMD_SIZE) since 6.8).
                bool hugeAligned = _thp && kind == MappingKind.Anonymous && (length & (Paging.PageTable.PteTableSpan - 1)) == 0;
                start = FindGap(length, hugeAligned ? Paging.PageTable.PteTableSpan : PhysicalMemory.PageSize);
            }

            ulong end = start + length;

            // Merge with neighbours that continue it (Linux vma_merge): adjacent, same protection and backing, and
            // for files the next pages of the same file. mprotect merges the same way, so VMAs never fragment.
            var merged = new Extent(start, end, protection, kind, file, fileOffset / PhysicalMemory.PageSize, AnonVma: false);
            var remove = new List<Vma>(2);
            Vma? prev = start > MinAddress ? _index.Find(start - 1) : null;
            if (prev != null && Extent.Of(prev).CanJoin(merged))
            {
                remove.Add(prev);
                merged = Extent.Of(prev).Join(merged);
            }

            Vma? next = _index.Find(end);
            if (next != null && merged.CanJoin(Extent.Of(next)))
            {
                remove.Add(next);
                merged = merged.Join(Extent.Of(next));
            }

            foreach (Vma v in remove)
            {
                BeginChange(cpu, v);
            }

            Vma fresh = _slab.Allocate();
            fresh.Initialize(this, merged.Start, merged.End, protection, kind, file, merged.FilePage);
            foreach (Vma v in remove)
            {
                fresh.InheritAnonVma(v); // vma_merge keeps the neighbour's anon_vma (vma_expand: dup_anon_vma).
            }

            _index.Replace(remove, [fresh]);
            published = true;
            foreach (Vma v in remove)
            {
                EndChangeAndRetire(v);
            }

            return start;
        }
        finally
        {
            if (!published)
            {
                file?.RemoveMapping();
            }

            WriteUnlock(cpu);
        }
    }

    /// <summary>The highest free range of <paramref name="length"/> bytes below the hint, starting on an <paramref name="align"/> boundary.</summary>
    private ulong FindGap(ulong length, ulong align)
    {
        for (int pass = 0; pass < 2; pass++)
        {
            ulong hint = _mmapHint;
            while (hint >= MinAddress + length && ((hint - length) & ~(align - 1)) >= MinAddress)
            {
                ulong start = (hint - length) & ~(align - 1);
                Vma? clash = _index.FirstOverlap(start, start + length);
                if (clash == null)
                {
                    _mmapHint = start;
                    return start;
                }

                hint = clash.Start;
            }

            _mmapHint = MmapBase; // Wrap around once and look for holes left by unmaps.
        }

        throw new AddressSpaceFullException(length);
    }
}
