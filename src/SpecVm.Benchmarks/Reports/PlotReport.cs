using System.Globalization;
using ScottPlot;
using SpecVm.Mm;
using SpecVm.Scaling;

namespace SpecVm.Benchmarks.Reports;

/// <summary>
/// Plots (PNG and SVG) with ScottPlot: throughput vs threads (the model on the left axis, the kernel on its own right
/// axis), per-thread efficiency with its uncertainty, and every outcome the strategies declare (successes, each abort reason) on a log axis. Every plot carries
/// the run's identity in a footer; every strategy keeps its colour across plots (<see cref="Series.ColorIndex"/>);
/// error bars are ±1 SD over the point's repeats, capped, and series are offset slightly on x so bars never overlap.
/// A family with predicted points is drawn against CPUs on a log2 axis: each prediction a line over its shaded
/// sensitivity band, measured points (if any) as open markers with their error bars on top.
/// </summary>
internal static class PlotReport
{
    private const int Width = 960;
    private const int Height = 680;

    /// <summary>The width of a plot with its legend on the right (measured and predicted series).</summary>
    private const int WideWidth = 1320;

    /// <summary>x offset between neighbouring series at one thread count: enough to separate capped bars, small next to 1 thread.</summary>
    private const double JitterStep = 0.06;

    /// <summary>The same on a log2 axis, where 1 is a doubling of the thread count.</summary>
    private const double LogJitterStep = 0.02;

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private static readonly IPalette StrategyPalette = new ScottPlot.Palettes.Category10();
    private static readonly IPalette ReasonPalette = new ScottPlot.Palettes.Tsitsulin();

    public static IReadOnlyList<PlotFile> WriteAll(ScalingResult r, string dir)
    {
        var files = new List<PlotFile>();
        string footer = Series.Identity(r);
        foreach (var (family, series) in Series.ByFamily(r))
        {
            files.Add(Throughput(r, family, series, dir, footer));
            if (series.Any(s => s.Points.Count > 1))
            {
                files.Add(Efficiency(r, family, series, dir, footer));
            }
        }

        PlotFile? aborts = FaultOutcomes(r, dir, footer);
        if (aborts != null)
        {
            files.Add(aborts);
        }

        return files;
    }

    private static PlotFile Throughput(ScalingResult r, string family, List<SeriesData> series, string dir, string footer)
    {
        var plt = new Plot();
        var axis = new XAxis(series);
        bool hasKernel = series.Any(s => s.Kernel);
        bool anyIdeal = false;
        for (int i = 0; i < series.Count; i++)
        {
            SeriesData x = series[i];
            Color color = StrategyPalette.GetColor(x.Kernel ? Series.StrategyOrder(r).Count : Series.ColorIndex(r, x.Strategy));
            double[] xs = x.Points.Select(p => axis.X(p.Threads) + axis.Jitter(i, series.Count)).ToArray();
            double[] ys = x.Points.Select(p => p.OpsPerSecond).ToArray();
            if (x.Predicted)
            {
                AddPredicted(plt, x, xs, ys, color);
                continue;
            }

            // Measured: a line and markers with ±1 SD bars; over a prediction (log2 axis), markers only.
            var line = plt.Add.Scatter(xs, ys, color);
            line.LegendText = x.Kernel ? $"{x.Label} (right axis)" : axis.Log ? $"{x.Label} (measured)" : x.Label;
            line.LineWidth = axis.Log ? 0 : 2;
            line.LinePattern = x.Kernel ? LinePattern.Dashed : LinePattern.Solid;
            line.MarkerSize = axis.Log ? 11 : 8;
            line.MarkerShape = axis.Log ? MarkerShape.OpenCircle : MarkerShape.FilledCircle;
            var err = plt.Add.ErrorBar(xs, ys, x.Points.Select(p => p.OpsPerSecondStdDev).ToArray());
            err.Color = color;
            err.CapSize = 6;
            err.LineWidth = 1.5f;
            if (x.Kernel)
            {
                line.Axes.YAxis = plt.Axes.Right;
                err.Axes.YAxis = plt.Axes.Right;
            }

            ScalingPoint? one = x.Points.Find(p => p.Threads == 1);
            if (one != null && axis.MaxThreads > 1 && !axis.Log)
            {
                var ideal = plt.Add.Line(1, one.OpsPerSecond, axis.MaxThreads, one.OpsPerSecond * axis.MaxThreads);
                ideal.LineColor = color.WithAlpha(0.6);
                ideal.LinePattern = LinePattern.Dotted;
                ideal.LineWidth = 1.5f;
                if (x.Kernel)
                {
                    ideal.Axes.YAxis = plt.Axes.Right;
                }

                anyIdeal = true;
            }
        }

        AddFloor(r, family, series, plt, axis, hasKernel);
        string unit = series[0].Points[0].OperationUnit;
        var measured = series.Where(s => !s.Predicted).SelectMany(s => s.Points).ToList();
        if (anyIdeal)
        {
            plt.Legend.ManualItems.Add(new LegendItem { LabelText = "ideal: linear from the series' 1-thread mean", LineColor = Colors.Gray, LinePattern = LinePattern.Dotted, LineWidth = 1.5f });
        }

        if (measured.Count > 0)
        {
            int n = measured.Select(Series.Repeats).Max();
            plt.Legend.ManualItems.Add(new LegendItem { LabelText = $"error bars: ±1 SD over n={n} repeats (measured)", LineColor = Colors.Black, LineWidth = 1.5f, MarkerShape = MarkerShape.VerticalBar, MarkerSize = 12, MarkerLineColor = Colors.Black });
        }

        if (series.Any(s => s.Predicted && s.Points.Any(p => p.PredictedLow != null)))
        {
            plt.Legend.ManualItems.Add(new LegendItem { LabelText = "shaded: predicted band (uncertain constants x0.5 .. x1.5)", FillColor = Colors.Gray.WithAlpha(0.25) });
        }

        if (r.PredictedSettings is ScalingSettings v && (r.Settings.MappingMib != v.MappingMib || r.Settings.SliceMib != v.SliceMib))
        {
            plt.Legend.ManualItems.Add(new LegendItem { LabelText = string.Create(Inv, $"round/slice MiB: measured {r.Settings.MappingMib}/{r.Settings.SliceMib}, predicted {v.MappingMib}/{v.SliceMib}"), LineWidth = 0 });
        }

        string what = series.Any(s => s.Predicted) ? (measured.Count > 0 ? "measured and predicted" : "predicted (model)") : "measured";
        plt.Title($"{family}: throughput vs {(axis.Log ? "CPUs" : "threads")} ({what})");
        plt.XLabel(axis.Log ? "CPUs (log2 scale; predicted: simulated CPUs)" : "threads (CPUs)");
        plt.YLabel($"model: {unit} per second");
        axis.Apply(plt);
        plt.Axes.AutoScaleY(plt.Axes.Left);
        plt.Axes.SetLimitsY(0, plt.Axes.GetLimits(plt.Axes.Bottom, plt.Axes.Left).Top * 1.05, plt.Axes.Left);
        if (hasKernel)
        {
            plt.Axes.Right.Label.Text = $"kernel (native): {unit} per second";
            plt.Axes.AutoScaleY(plt.Axes.Right);
            plt.Axes.SetLimitsY(0, plt.Axes.GetLimits(plt.Axes.Bottom, plt.Axes.Right).Top * 1.05, plt.Axes.Right);
        }

        if (axis.Log)
        {
            // A measured and a predicted series per strategy and the notes: more items than the bottom legend shows.
            plt.ShowLegend(Edge.Right);
        }
        else
        {
            plt.ShowLegend(Edge.Bottom);
        }
        return Save(plt, dir, footer, $"throughput-{family}", $"{family}: throughput vs {(axis.Log ? "CPUs, " + what : "threads (model left axis, kernel right axis)")}", width: axis.Log ? WideWidth : Width);
    }

    /// <summary>
    /// The family's physical floor (<see cref="ScalingResult.Floors"/>), measured in the same run, as a dashed grey line:
    /// the model workload's on the left axis, or, for a family of the kernel alone, the native workload's on the right.
    /// </summary>
    private static void AddFloor(ScalingResult r, string family, List<SeriesData> series, Plot plt, XAxis axis, bool hasKernel)
    {
        List<FloorPoint> floor = [.. (r.Floors ?? []).Where(f => f.Workload == family).OrderBy(f => f.Threads)];
        bool right = false;
        if (floor.Count == 0 && hasKernel && !series.Any(s => !s.Kernel))
        {
            string native = series.First(s => s.Kernel).Points[0].Workload;
            floor = [.. (r.Floors ?? []).Where(f => f.Workload == native).OrderBy(f => f.Threads)];
            right = true;
        }

        if (floor.Count == 0)
        {
            return;
        }

        var line = plt.Add.Scatter(floor.Select(f => axis.X(f.Threads)).ToArray(), floor.Select(f => f.OpsPerSecond).ToArray(), Colors.DimGray);
        line.LegendText = PhysicalFloorReport.Label(floor[0]) + (right ? " (right axis)" : string.Empty);
        line.LinePattern = LinePattern.Dashed;
        line.LineWidth = 2;
        line.MarkerSize = 6;
        line.MarkerShape = MarkerShape.OpenSquare;
        if (right)
        {
            line.Axes.YAxis = plt.Axes.Right;
        }
    }

    /// <summary>A predicted series: its band shaded, then the prediction as a line with small markers.</summary>
    private static void AddPredicted(Plot plt, SeriesData x, double[] xs, double[] ys, Color color)
    {
        var banded = x.Points.Select((p, k) => (X: xs[k], p.PredictedLow, p.PredictedHigh)).Where(b => b.PredictedLow != null && b.PredictedHigh != null).ToList();
        if (banded.Count > 1)
        {
            var band = plt.Add.FillY(banded.Select(b => b.X).ToArray(), banded.Select(b => b.PredictedLow!.Value).ToArray(), banded.Select(b => b.PredictedHigh!.Value).ToArray());
            band.FillColor = color.WithAlpha(0.18);
            band.LineWidth = 0;
        }

        var line = plt.Add.Scatter(xs, ys, color);
        line.LegendText = x.Label;
        line.LineWidth = 2;
        line.LinePattern = LinePattern.Solid;
        line.MarkerSize = 5;
    }

    private static PlotFile Efficiency(ScalingResult r, string family, List<SeriesData> series, string dir, string footer)
    {
        var plt = new Plot();
        var axis = new XAxis(series);
        double top = 1.2;
        for (int i = 0; i < series.Count; i++)
        {
            SeriesData x = series[i];
            Color color = StrategyPalette.GetColor(x.Kernel ? Series.StrategyOrder(r).Count : Series.ColorIndex(r, x.Strategy));
            ScalingPoint? one = x.Points.Find(p => p.Threads == 1);
            var values = x.Points.Select(p => (p.Threads, E: Series.Efficiency(p, one))).Where(v => v.E != null).ToList();
            if (values.Count == 0)
            {
                continue;
            }

            double[] xs = values.Select(v => axis.X(v.Threads) + axis.Jitter(i, series.Count)).ToArray();
            double[] ys = values.Select(v => v.E!.Value.Value).ToArray();
            var line = plt.Add.Scatter(xs, ys, color);
            line.LegendText = axis.Log && !x.Predicted && !x.Kernel ? $"{x.Label} (measured)" : x.Label;
            line.LinePattern = x.Kernel ? LinePattern.Dashed : LinePattern.Solid;
            if (x.Predicted)
            {
                // Deterministic: no error bars.
                line.LineWidth = 2;
                line.MarkerSize = 5;
                top = Math.Max(top, ys.Max() * 1.05);
                continue;
            }

            double[] sd = values.Select(v => v.E!.Value.Sd).ToArray();
            line.LineWidth = axis.Log ? 0 : 2;
            line.MarkerSize = axis.Log ? 11 : 8;
            line.MarkerShape = axis.Log ? MarkerShape.OpenCircle : MarkerShape.FilledCircle;
            var err = plt.Add.ErrorBar(xs, ys, sd);
            err.Color = color;
            err.CapSize = 6;
            err.LineWidth = 1.5f;
            top = Math.Max(top, ys.Zip(sd, (y, s) => y + s).Max() * 1.05);
        }

        var ideal = plt.Add.HorizontalLine(1);
        ideal.LinePattern = LinePattern.Dotted;
        ideal.LineColor = Colors.Gray;
        ideal.LineWidth = 1.5f;
        ideal.LegendText = "ideal: linear scaling (1)";
        var measured = series.Where(s => !s.Predicted).SelectMany(s => s.Points).ToList();
        if (measured.Count > 0)
        {
            int n = measured.Select(Series.Repeats).Max();
            plt.Legend.ManualItems.Add(new LegendItem { LabelText = $"error bars: ±1 SD, propagated from X(N) and X(1), n={n} repeats each (measured)", LineColor = Colors.Black, LineWidth = 1.5f, MarkerShape = MarkerShape.VerticalBar, MarkerSize = 12, MarkerLineColor = Colors.Black });
        }

        plt.Title($"{family}: per-{(axis.Log ? "CPU" : "thread")} efficiency X(N) / (N·X(1))");
        plt.XLabel(axis.Log ? "CPUs (log2 scale; predicted: simulated CPUs)" : "threads (CPUs)");
        plt.YLabel("efficiency (vs the series' own 1-thread mean)");
        axis.Apply(plt);
        plt.Axes.SetLimitsY(0, Math.Max(top, 1.9));   // room above 1 for the legend, inside the data area
        plt.ShowLegend(Alignment.UpperLeft);
        return Save(plt, dir, footer, $"efficiency-{family}", $"{family}: per-{(axis.Log ? "CPU" : "thread")} efficiency (1 = linear scaling)");
    }

    /// <summary>
    /// The x axis of a family's plots: thread counts as they are, or — when the family has predicted points, which
    /// reach tens of simulated CPUs — log2 of them, with a tick at every count present.
    /// </summary>
    private sealed class XAxis(List<SeriesData> series)
    {
        private readonly List<int> _threads = series.SelectMany(s => s.Points).Select(p => p.Threads).Distinct().Order().ToList();

        public bool Log { get; } = series.Any(s => s.Predicted);

        public int MaxThreads => _threads[^1];

        public double X(int threads) => Log ? Math.Log2(threads) : threads;

        /// <summary>The x offset of series <paramref name="i"/> of <paramref name="count"/>, centred on the thread count.</summary>
        public double Jitter(int i, int count) => (i - ((count - 1) / 2.0)) * (Log ? LogJitterStep : JitterStep);

        public void Apply(Plot plt)
        {
            if (Log)
            {
                plt.Axes.SetLimitsX(X(_threads[0]) - 0.4, X(MaxThreads) + 0.4);
                plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(_threads.Select(n => new Tick(X(n), n.ToString(Inv))).ToArray());
                return;
            }

            plt.Axes.SetLimitsX(0.5, MaxThreads + 0.5);
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(1);
        }
    }

    /// <summary>
    /// The strategies' outcomes per point as counts on a log axis: every outcome a point's strategy declares (its
    /// successes, each abort reason, retries...) next to each other, so a reason seen 3 times in 10 million attempts is
    /// as visible as the successes; each bar is labelled with its count. Attempt counts label the point instead of a bar.
    /// </summary>
    private static PlotFile? FaultOutcomes(ScalingResult r, string dir, string footer)
    {
        static IEnumerable<OutcomeCount> Bars(ScalingPoint p) => (p.Outcomes ?? []).Where(o => o.Kind != FaultOutcomeKind.Attempt);
        var points = r.Points.Where(p => Bars(p).Any(o => o.Count > 0)).ToList();
        if (points.Count == 0)
        {
            return null;
        }

        // The outcomes are the names the result holds, in its order (so each keeps its colour from run to run); only
        // those that occurred get a bar and a legend entry. Successes are grey, everything else from a palette apart
        // from the strategies'.
        var allNames = r.Points.SelectMany(Bars).Select(o => o.Name).Distinct().ToList();
        var successNames = r.Points.SelectMany(Bars).Where(o => o.Kind == FaultOutcomeKind.Success).Select(o => o.Name).ToHashSet();
        var outcomes = allNames.Where(n => points.Any(p => Bars(p).Any(o => o.Name == n && o.Count > 0))).ToList();
        Color OutcomeColor(int k) => successNames.Contains(outcomes[k]) ? Colors.Gray.WithAlpha(0.7) : ReasonPalette.GetColor(allNames.IndexOf(outcomes[k]));
        double slot = 0.8 / outcomes.Count;
        var plt = new Plot();
        var bars = new List<Bar>();
        var ticks = new List<Tick>();
        double maxLog = 1;
        for (int g = 0; g < points.Count; g++)
        {
            ScalingPoint p = points[g];
            for (int k = 0; k < outcomes.Count; k++)
            {
                long count = Bars(p).FirstOrDefault(o => o.Name == outcomes[k])?.Count ?? 0;
                if (count <= 0)
                {
                    continue;
                }

                double log = Math.Log10(count) + 1;   // +1 so a count of 1 still has a visible bar (the axis starts at 10^-1)
                double x = g - 0.4 + (slot * (k + 0.5));
                bars.Add(new Bar { Position = x, ValueBase = 0, Value = log, FillColor = OutcomeColor(k), Size = slot * 0.9 });
                var text = plt.Add.Text(count.ToString("N0", Inv), x, log);
                text.LabelFontSize = 9;
                text.LabelRotation = -90;
                text.LabelAlignment = Alignment.MiddleLeft;
                text.OffsetY = -4;
                maxLog = Math.Max(maxLog, log);
            }

            long attempts = p.OutcomeTotal(FaultOutcomeKind.Attempt);
            string attemptLine = attempts > 0 ? $"\n{attempts.ToString("N0", Inv)} attempts" : string.Empty;
            ticks.Add(new Tick(g, $"{p.Workload}\n{p.Strategy}, {p.Threads}{(Series.IsPredicted(p) ? " CPUs, predicted" : "T")}{attemptLine}"));
        }

        plt.Add.Bars(bars);
        for (int k = 0; k < outcomes.Count; k++)
        {
            plt.Legend.ManualItems.Add(new LegendItem { LabelText = outcomes[k], FillColor = OutcomeColor(k) });
        }

        var yTicks = Enumerable.Range(0, (int)Math.Ceiling(maxLog) + 2).Select(e => new Tick(e, e == 0 ? "0.1" : Math.Pow(10, e - 1).ToString("N0", Inv))).ToArray();
        plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(yTicks);
        plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plt.Axes.Bottom.TickLabelStyle.FontSize = 10;
        plt.Axes.Bottom.MajorTickStyle.Length = 0;
        plt.Title("Fault strategies: outcomes per point (count, log scale)");
        plt.YLabel("faults (log scale; bars labelled with counts)");
        plt.Axes.SetLimitsY(0, maxLog + 1.6);
        plt.Axes.SetLimitsX(-0.6, points.Count - 0.4);
        plt.ShowLegend(Alignment.UpperRight, Orientation.Horizontal);
        int width = Math.Max(Width, 170 * points.Count);
        return Save(plt, dir, footer, "fault-outcomes", "Fault strategies: each declared outcome per point, successes and every abort reason (counts, log scale)", width);
    }

    private static PlotFile Save(Plot plt, string dir, string footer, string name, string title, int width = Width)
    {
        // The footer: a second bottom axis with no ticks whose label is the run's identity.
        var foot = plt.Axes.AddBottomAxis();
        foot.TickGenerator = new ScottPlot.TickGenerators.NumericManual();
        foot.LabelText = footer;
        foot.LabelFontSize = 11;
        foot.LabelBold = false;
        foot.LabelFontColor = Colors.DimGray;
        foot.FrameLineStyle.Width = 0;
        foot.MajorTickStyle.Length = 0;
        foot.MinorTickStyle.Length = 0;

        string png = name + ".png";
        string svg = name + ".svg";
        plt.SavePng(Path.Combine(dir, png), width, Height);
        plt.SaveSvg(Path.Combine(dir, svg), width, Height);
        return new PlotFile(title, png, svg);
    }
}
