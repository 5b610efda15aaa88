"""What generating schemas from OpenAPI documents costs, on the largest reference document
(``fal-ai/lora``, 37 inputs), against the hand-written ``LoraInput`` (19 inputs), in one
process and one run:

- building the marshmallow schema from the document (done once per document and cached),
- validating an input (the document's example input, all defaults filled in),
- rendering the model form (``describe_fields`` + the form partial).

    python bench/openapi_forms.py [--rounds 200]

Prints the median time of each and the ratio generated / hand-written. Ratios, not absolute
numbers, are what compare across machines.
"""

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def median_seconds(fn, rounds):
    fn()  # warm: first-call caches (Jinja's compiled template, marshmallow's field binding)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)

    from flask import render_template

    from falweb import create_app
    from falweb.openapi.documents import BUILTIN
    from falweb.openapi.documents import input_and_output
    from falweb.openapi.examples import example_input
    from falweb.pages import form_context
    from falweb.schemas import CATALOG
    from falweb.schemas import describe_fields
    from falweb.schemas.catalog import documented_endpoint
    from falweb.schemas.forms import values_from_input
    from falweb.schemas.from_json_schema import Builder
    from falweb.schemas.lora import LoraInput

    document = BUILTIN.document("fal-ai/lora")
    generated = documented_endpoint("fal-ai/lora")
    hand = dataclasses.replace(CATALOG["fal-ai/lora"], input_schema=LoraInput)
    example = example_input(generated)
    # The hand-written schema takes only its 19 fields: the same input, cut to them.
    hand_example = {k: v for k, v in example.items() if k in LoraInput._declared_fields}
    generated_schema, hand_schema = generated.input_schema(), hand.input_schema()

    with tempfile.TemporaryDirectory() as instance:
        app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": instance,
                          "FALWEB_BACKEND": "local", "FALWEB_LOCAL_URL": "http://127.0.0.1:9",
                          "WTF_CSRF_ENABLED": False})

        def build():
            Builder(document).schema_class(input_and_output(document)[0], top=True)

        def render(endpoint):
            def go():
                fields = describe_fields(endpoint)
                context = form_context(endpoint, fields, values_from_input(fields, None))
                render_template("partials/_form.html", **context)
            return go

        with app.test_request_context("/models/fal-ai/lora"):
            rows = [
                ("validate an input", median_seconds(lambda: generated_schema.load(example),
                                                     args.rounds),
                 median_seconds(lambda: hand_schema.load(hand_example), args.rounds)),
                ("render the form", median_seconds(render(generated), args.rounds),
                 median_seconds(render(hand), args.rounds)),
            ]
            built = median_seconds(build, max(args.rounds // 10, 5))

    print(f"fal-ai/lora: generated schema {len(generated_schema.fields)} inputs, "
          f"hand-written {len(hand_schema.fields)}; median of {args.rounds} rounds")
    print(f"{'':22}{'generated':>12}{'hand-written':>14}{'ratio':>8}")
    for name, generated_time, hand_time in rows:
        print(f"{name:22}{generated_time * 1e3:>10.3f}ms{hand_time * 1e3:>12.3f}ms"
              f"{generated_time / hand_time:>7.2f}x")
    print(f"{'build from document':22}{built * 1e3:>10.3f}ms{'(none)':>14}"
          f"  once per document, then cached")
    per_field = [(name, (g / 37) / (h / 19)) for name, g, h in rows]
    print("per input field: " + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in per_field))


if __name__ == "__main__":
    main()
