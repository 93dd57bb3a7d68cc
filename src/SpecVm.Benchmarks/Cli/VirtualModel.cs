using SpecVm.Simulation;

namespace SpecVm.Benchmarks.Cli;

/// <summary>
/// Turns <c>--virtual PRESET|FILE</c> and <c>--calibration FILE</c> into a <see cref="CostModel"/>, with errors that
/// name the option, the file and what is wrong with it.
/// </summary>
/// <remarks>
/// A preset takes its topology and transfer costs from the library and its local costs (fault, TLB hit, page kernels,
/// VMA edit) from the calibration file, or from the built-in calibration without one. A JSON file is a whole model —
/// topology and every constant — so <c>--calibration</c> does not combine with it. <c>calibrate</c> writes a whole model
/// (the <c>host</c> preset's), so its file serves either way.
/// </remarks>
internal static class VirtualModel
{
    /// <summary>The file <c>calibrate</c> writes without <c>--out</c>.</summary>
    public const string DefaultCalibrationFile = "calibration.json";

    /// <summary>The <c>host</c> preset with <paramref name="calibration"/>'s local costs (null: the built-in ones), named "host".</summary>
    public static CostModel Host(CostModel? calibration) => CostModel.Preset("host", calibration); // The preset names itself.

    /// <summary>The model for <paramref name="spec"/>, a preset name or a JSON file.</summary>
    /// <param name="spec">The value of <c>--virtual</c>.</param>
    /// <param name="calibrationFile">The value of <c>--calibration</c>, or null.</param>
    public static CostModel Resolve(string spec, string? calibrationFile)
    {
        CostModel? calibration = calibrationFile == null ? null : Read(calibrationFile, "--calibration");
        string? preset = CostModel.PresetNames.FirstOrDefault(n => string.Equals(n, spec, StringComparison.OrdinalIgnoreCase));
        if (preset != null)
        {
            CostModel m = CostModel.Preset(preset, calibration);
            m.Name = preset;
            return m;
        }

        if (File.Exists(spec) || spec.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || spec.Contains(Path.DirectorySeparatorChar, StringComparison.Ordinal))
        {
            if (calibration != null)
            {
                throw new UsageException($"--calibration applies to a --virtual preset ({string.Join(", ", CostModel.PresetNames)}); the file '{spec}' is a whole cost model already.");
            }

            CostModel m = Read(spec, "--virtual");
            if (m.Name is "custom" or "")
            {
                m.Name = Path.GetFileNameWithoutExtension(spec);
            }

            return m;
        }

        throw new UsageException($"--virtual: '{spec}' is neither a preset ({string.Join(", ", CostModel.PresetNames)}) nor a cost-model JSON file.");
    }

    /// <summary>Reads a cost model file; <paramref name="option"/> names where the path came from.</summary>
    public static CostModel Read(string path, string option)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UsageException($"{option} '{path}': cannot read the file ({e.Message}).");
        }

        try
        {
            return CostModel.FromJson(text);
        }
        catch (ArgumentException e)
        {
            // The library's message, without the " (Parameter 'json')" that ArgumentException appends for its caller.
            string why = e.ParamName == null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", string.Empty, StringComparison.Ordinal);
            throw new UsageException($"{option} '{path}' is not a usable cost model: {why}");
        }
    }
}
