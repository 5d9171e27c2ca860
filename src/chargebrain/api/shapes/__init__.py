"""The API's input shapes, each declared once with pydantic (on chargebrain.shapes).

`site.py` the site parameters (set_params, with the controller's hardware fields and the
1.x watt names), `devices.py` a device's settings per kind (set_device), `pushes.py` what
HTTP-input devices push (set_ajax_evse, set_ajax_meter), `users.py` the user object and
its cards (set_user), `cm_vars.py` the set_cm_vars body; `fields.py` the lenient field
readers they share, `schema.py` the JSON Schema the web UI builds its forms from
(get_config_schema). Validation, the messages naming the field and that schema all come
from these declarations; the command modules only apply what they give.
"""
