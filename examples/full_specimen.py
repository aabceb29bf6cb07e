"""A scripted analysis of one specimen with the metallo library, step by step.

    python examples/full_specimen.py [--out DIR] [--seed N]

It follows one synthetic ferrite + lath-bainite specimen (metallo.synth) from the EBSD map and
the light-optical micrograph to phase fractions with confidence intervals, writing everything
into one Specimen file with provenance, then the QC report. Node and step names come from
``metallo.names``; ``metallo.steps.run_step(spec, step, ...)`` runs the same steps as the recipe. Replace the synth part with
``mt.io.read_ebsd("map.ang")`` and ``mt.io.read_image("lom.tif", pixel_size_um=...)`` for real data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import metallo as mt
from metallo import names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="full-specimen", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Inputs: an EBSD map and a LOM micrograph of the same area.
    sample = mt.synth.make_specimen(seed=args.seed)
    ebsd_map, lom = sample.ebsd, sample.lom
    spec = mt.Specimen.create(
        out / "S1.h5", specimen_id="S1", material="synthetic CP steel",
        process={"route": "synthetic", "heat_treatment": "n/a", "preparation": "n/a", "etchant": "nital 2 %"},
        overwrite=True,
    )
    lom.attrs.update(source="metallo.synth", sha256="")
    spec.add(names.micrograph("lom"), lom, step="io.synthetic", parameters={"seed": args.seed})
    spec.add(names.EBSD_MAP, ebsd_map, step="io.synthetic", parameters={"seed": args.seed})

    # 2. EBSD: cleanup (CI >= 0.1, 5° tolerance, as in the lath-bainite paper), grains, KAM/GOS/GAM.
    cleaned = mt.ebsd.clean(ebsd_map, min_ci=0.1, tolerance_deg=5.0)
    spec.add(names.EBSD_CLEAN, cleaned, step=names.STEP_CLEAN, parameters={"min_ci": 0.1, "tolerance_deg": 5.0},
             inputs=[names.EBSD_MAP])
    derived = mt.ebsd.derive(cleaned)
    spec.add(names.derived(names.EBSD_CLEAN), derived, step=names.STEP_DERIVE, parameters={}, inputs=[names.EBSD_CLEAN])
    grains = mt.ebsd.grains(cleaned, tolerance_deg=5.0)
    print(f"{len(grains.table)} grains, mean ECD {grains.table['ecd_um'].mean():.2f} µm")

    # 3. Correlate: register the EBSD map onto the micrograph (method "auto": automatic control
    #    points through a thin-plate spline, judged by evidence it was not fitted to; the IQ map
    #    first, the grain boundaries where that fails). A failed registration says so.
    reg = mt.correlate.register_ebsd(lom, cleaned)
    if reg.quality["failed"]:
        raise SystemExit(f"registration failed: {reg.quality['failure_reasons']}")
    print("registration quality:", {k: v for k, v in reg.quality.items() if isinstance(v, (int, float, str))})
    reg_ds = reg.to_dataset()
    reg_ds.attrs.update(fixed=names.micrograph("lom"), moving=names.EBSD_CLEAN)
    spec.add(names.registration("lom"), reg_ds, step=names.STEP_REGISTER, parameters={"method": "auto", "representation": reg.quality["representation"]},
             inputs=[names.micrograph("lom"), names.EBSD_CLEAN])

    # 4. Annotate: EBSD-informed lath-bainite / polygonal-ferrite mask, carried onto the LOM.
    labels = mt.annotate.from_ebsd(cleaned, rules="lath_bainite")
    on_lom = mt.annotate.to_micrograph(labels, reg, lom)
    annotation = names.annotation_on("lath_bainite", "lom")
    spec.add(annotation, on_lom, step=names.STEP_TO_MICROGRAPH, parameters={"rules": "lath_bainite"},
             inputs=[names.EBSD_CLEAN, names.registration("lom")])

    # 5. Segment: the unsupervised CNN + superpixel method as a first look (2 classes), default settings.
    seg = mt.segment.unsupervised(lom, n_classes=2, seed=0)
    truth = sample.lom_labels
    agreement = max(np.mean(seg.values == truth), np.mean(seg.values == 1 - truth))
    print(f"unsupervised segmentation agrees with the truth on {100 * agreement:.1f}% of the pixels")

    # 6. Quantify: phase fractions over 3 x 3 fields with a 95% CI (ASTM E562), from the annotation.
    fields = mt.quantify.measurement_fields(on_lom, grid=(3, 3), ignore_index=255)
    fractions = mt.quantify.phase_fraction_ci(fields, classes=["polygonal_ferrite", "lath_bainite"], ignore_index=255)
    print(fractions.to_string(index=False))
    # Named as every chain names it (metallo.names), so the report finds it.
    spec.add(names.quantity(annotation, names.PHASE_FRACTIONS), fractions, step=names.quantify_step("phases"),
             parameters={"fields": [3, 3]}, inputs=[annotation])
    spec.save()

    # 7. The QC report, from the file alone.
    report = mt.report.write_report(spec, out / "S1_report.html", limits={"lath_bainite": [0.25, 0.45]})
    print(f"specimen: {spec.path}\nreport:   {report}")


if __name__ == "__main__":
    main()
