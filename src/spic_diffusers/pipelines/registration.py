"""Make the installed SPIC classes known to diffusers' own loader, so that
``DiffusionPipeline.from_pretrained(folder_or_hub_id)`` builds a SPIC pipeline without running code from the folder.

diffusers reads ``model_index.json`` entries ``[library, class]`` and imports a library only when it is one it
loads components from (``LOADABLE_CLASSES``: diffusers, transformers, ...); any other library must already be
imported, and its Hub download refuses a repository that names one unless the repository ships that module as code
(loaded with ``trust_remote_code=True``). The pipeline class (``_class_name``) is looked up in the ``diffusers``
namespace. SPIC folders name ``spic_diffusers.models.unet_spic`` and ``SPICPipeline``; registering both lets every
step of diffusers' loader, download included, resolve them to the installed package.
"""

from __future__ import annotations


def register_with_diffusers(pipeline_class: type, component_classes: tuple[type, ...]) -> None:
    """Register `pipeline_class` by its name and the modules of `component_classes` as loadable libraries
    (what ``save_pretrained`` writes for them). Idempotent."""
    import diffusers
    from diffusers.pipelines import pipeline_loading_utils

    loadable = pipeline_loading_utils.LOADABLE_CLASSES
    for component in component_classes:
        # The same base classes and save/load methods as diffusers' own components (ModelMixin, SchedulerMixin).
        loadable.setdefault(component.__module__, dict(loadable["diffusers"]))
    if getattr(diffusers, pipeline_class.__name__, None) is not pipeline_class:
        setattr(diffusers, pipeline_class.__name__, pipeline_class)
